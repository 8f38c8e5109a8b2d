"""The console: a label on each device, and console sign-in sessions.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # The series endpoint reads one device's time range: cover it, values included.
    op.drop_index("ix_readings_device_timestamp", table_name="readings")
    op.create_index(
        "ix_readings_device_timestamp_schema_values",
        "readings",
        ["device", "timestamp", "schema", "values"],
    )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("label", sa.String(100), nullable=True))
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_console_sessions"),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name="fk_console_sessions_api_key_id_api_keys",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_console_sessions_api_key_id", "console_sessions", ["api_key_id"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_api_key_id", "console_sessions")
    op.drop_table("console_sessions")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("label")
    op.drop_index("ix_readings_device_timestamp_schema_values", table_name="readings")
    op.create_index("ix_readings_device_timestamp", "readings", ["device", "timestamp"])
