"""Create the AI layer's tables: anomaly events, model states, worker cursors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _address() -> sa.types.TypeEngine[str]:
    return sa.String(42).with_variant(sa.String(42, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ai_anomalies",
        sa.Column("id", _id(), sa.Identity(), nullable=False),
        sa.Column("reading_id", sa.BigInteger(), nullable=False),
        sa.Column("device", _address(), nullable=False),
        sa.Column("schema", sa.LargeBinary(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("expected", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("check", sa.String(16), nullable=False),
        sa.Column("detector", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ai_anomalies"),
        sa.ForeignKeyConstraint(
            ["reading_id"],
            ["readings.id"],
            name="fk_ai_anomalies_reading_id_readings",
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint("reading_id", "metric", name="uq_ai_anomalies_reading_id_metric"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ai_anomalies_device_id", "ai_anomalies", ["device", "id"])
    op.create_index("ix_ai_anomalies_timestamp", "ai_anomalies", ["timestamp"])
    op.create_table(
        "ai_models",
        sa.Column("device", _address(), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device", "metric", "model", name="pk_ai_models"),
    )
    op.create_table(
        "ai_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("reading_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_ai_cursors"),
    )


def downgrade() -> None:
    op.drop_table("ai_cursors")
    op.drop_table("ai_models")
    op.drop_index("ix_ai_anomalies_timestamp", table_name="ai_anomalies")
    op.drop_index("ix_ai_anomalies_device_id", table_name="ai_anomalies")
    op.drop_table("ai_anomalies")
