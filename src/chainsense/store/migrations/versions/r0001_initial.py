"""Create devices, readings and api_keys.

Revision ID: 0001
Revises:
Create Date: 2025-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
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
        "devices",
        sa.Column("address", _address(), nullable=False),
        sa.Column("identity", _address(), nullable=False),
        sa.Column("owner", _address(), nullable=False),
        sa.Column("metadata_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registered_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_devices"),
        sa.CheckConstraint("status IN ('active', 'revoked', 'rotated')", name="ck_devices_status"),
        sa.CheckConstraint("last_seq >= 0", name="ck_devices_last_seq"),
    )
    op.create_index("ix_devices_identity", "devices", ["identity"])

    op.create_table(
        "readings",
        sa.Column("id", _id(), sa.Identity(), nullable=False),
        sa.Column("device", _address(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("schema", sa.LargeBinary(32), nullable=False),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.ARRAY(sa.BigInteger()), "postgresql"),
            nullable=False,
        ),
        sa.Column("signature", sa.LargeBinary(65), nullable=False),
        sa.Column("struct_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_readings"),
        sa.ForeignKeyConstraint(
            ["device"],
            ["devices.address"],
            name="fk_readings_device_devices",
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint("device", "seq", name="uq_readings_device_seq"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_readings_device_timestamp", "readings", ["device", "timestamp"])
    op.create_index("ix_readings_device_id", "readings", ["device", "id"])
    op.create_index("ix_readings_batch_id", "readings", ["batch_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", _id(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        sa.CheckConstraint("scope IN ('admin', 'operator', 'reader')", name="ck_api_keys_scope"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_readings_batch_id", table_name="readings")
    op.drop_index("ix_readings_device_id", table_name="readings")
    op.drop_index("ix_readings_device_timestamp", table_name="readings")
    op.drop_table("readings")
    op.drop_index("ix_devices_identity", table_name="devices")
    op.drop_table("devices")
