"""Create the alarms table: anomalies grouped per device while they continue, with states.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _address() -> sa.types.TypeEngine[str]:
    return sa.String(42).with_variant(sa.String(42, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ai_alarms",
        sa.Column("id", _id(), sa.Identity(), nullable=False),
        sa.Column("device", _address(), nullable=False),
        sa.Column("schema", sa.LargeBinary(32), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("check", sa.String(16), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("max_score", sa.Double(), nullable=False),
        sa.Column("last_value", sa.String(64), nullable=True),
        sa.Column("expected_low", sa.String(64), nullable=True),
        sa.Column("expected_high", sa.String(64), nullable=True),
        sa.Column("reading_id", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("acknowledged_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("cleared_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ai_alarms"),
        sa.CheckConstraint("state IN ('active', 'cleared')", name="ck_ai_alarms_state"),
        sa.CheckConstraint(
            "severity IN ('critical', 'major', 'minor')", name="ck_ai_alarms_severity"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ai_alarms_state_id", "ai_alarms", ["state", "id"])
    op.create_index("ix_ai_alarms_device_id", "ai_alarms", ["device", "id"])


def downgrade() -> None:
    op.drop_index("ix_ai_alarms_device_id", table_name="ai_alarms")
    op.drop_index("ix_ai_alarms_state_id", table_name="ai_alarms")
    op.drop_table("ai_alarms")
