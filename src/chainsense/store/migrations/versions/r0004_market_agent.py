"""Create the tables of forecast-driven market orders: mandates and the orders placed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _address() -> sa.types.TypeEngine[str]:
    return sa.String(42).with_variant(sa.String(42, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "market_mandates",
        sa.Column("participant", _address(), nullable=False),
        sa.Column("meter", _address(), nullable=False),
        sa.Column("ask_price", sa.BigInteger(), nullable=False),
        sa.Column("bid_price", sa.BigInteger(), nullable=False),
        sa.Column("max_wh", sa.BigInteger(), nullable=False),
        sa.Column("sell_share", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("participant", name="pk_market_mandates"),
        sa.CheckConstraint("sell_share BETWEEN 1 AND 100", name="ck_market_mandates_sell_share"),
    )
    op.create_table(
        "market_agent_orders",
        sa.Column("participant", _address(), nullable=False),
        sa.Column("interval", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_per_wh", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("expected_import_wh", sa.Double(), nullable=True),
        sa.Column("expected_export_wh", sa.Double(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("participant", "interval", name="pk_market_agent_orders"),
        sa.CheckConstraint("side IN ('bid', 'ask', 'none')", name="ck_market_agent_orders_side"),
    )


def downgrade() -> None:
    op.drop_table("market_agent_orders")
    op.drop_table("market_mandates")
