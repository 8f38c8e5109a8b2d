"""Create batches: the Merkle batches the anchorer seals and anchors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _address() -> sa.types.TypeEngine[str]:
    return sa.String(42).with_variant(sa.String(42, collation="C"), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", _id(), sa.Identity(), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("reading_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", _address(), nullable=False),
        sa.Column("sealed_at", _time(), nullable=False),
        sa.Column("tx_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("block_time", sa.BigInteger(), nullable=True),
        sa.Column("anchored_at", _time(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.UniqueConstraint("root", name="uq_batches_root"),
        sa.CheckConstraint("state IN ('sealed', 'anchored')", name="ck_batches_state"),
        sa.CheckConstraint("reading_count > 0", name="ck_batches_reading_count"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_batches_state", "batches", ["state"])


def downgrade() -> None:
    op.drop_index("ix_batches_state", table_name="batches")
    op.drop_table("batches")
