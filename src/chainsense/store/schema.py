"""The tables, as SQLAlchemy Core metadata (the repositories use Core, not the ORM).

The migrations in ``migrations/versions`` create exactly this schema; a test compares the two.
Portable choices:

- 64-bit ids: ``BIGINT`` identity on PostgreSQL, ``INTEGER PRIMARY KEY AUTOINCREMENT`` on SQLite
  (SQLite's integers are 64-bit; only that spelling makes the column the rowid, and
  AUTOINCREMENT guarantees a public reading id is never reused).
- ``readings.values``: ``BIGINT[]`` on PostgreSQL, a JSON array on SQLite; both round-trip every
  int64 exactly.
- Addresses sort byte-wise on both backends (``COLLATE "C"`` on PostgreSQL), so cursor pages by
  address come in the same order whatever the server's locale.
- Times the server records are ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; SQLite has no zone, so
  :class:`UTCDateTime` stores UTC and hands back aware datetimes on both.
- ``seq``, ``timestamp``, ``last_seq`` are uint64 on the wire but signed ``BIGINT`` here: the
  repositories refuse values of 2^63 or more (ValueError) instead of wrapping them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "ai_alarms",
    "ai_anomalies",
    "ai_cursors",
    "ai_models",
    "api_keys",
    "batches",
    "console_sessions",
    "devices",
    "market_agent_orders",
    "market_mandates",
    "metadata",
    "readings",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (naive values are refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store times as timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def id_type() -> TypeEngine[int]:
    """BIGINT everywhere, spelled INTEGER on SQLite so the column is the rowid."""
    return BigInteger().with_variant(Integer(), "sqlite")


def int64_array_type() -> TypeEngine[Any]:
    """A list of int64: BIGINT[] on PostgreSQL, a JSON array elsewhere."""
    return JSON().with_variant(ARRAY(BigInteger()), "postgresql")


def address_type() -> TypeEngine[str]:
    """A checksum address; binary collation on PostgreSQL, so it sorts the same everywhere."""
    return String(42).with_variant(String(42, collation="C"), "postgresql")


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

devices = Table(
    "devices",
    metadata,
    Column("address", address_type(), primary_key=True),
    Column("identity", address_type(), nullable=False),
    Column("owner", address_type(), nullable=False),
    Column("metadata_hash", LargeBinary(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("registered_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("last_seq", BigInteger(), nullable=False, server_default=text("0")),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("label", String(100), nullable=True),  # migration 0006: an operator's name for it
    CheckConstraint("status IN ('active', 'revoked', 'rotated')", name="status"),
    CheckConstraint("last_seq >= 0", name="last_seq"),
    Index(None, "identity"),
)

readings = Table(
    "readings",
    metadata,
    Column("id", id_type(), Identity(), primary_key=True, autoincrement=True),
    Column(
        "device",
        address_type(),
        ForeignKey("devices.address", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("seq", BigInteger(), nullable=False),
    Column("timestamp", BigInteger(), nullable=False),
    Column("schema", LargeBinary(32), nullable=False),
    Column("values", int64_array_type(), nullable=False),
    Column("signature", LargeBinary(65), nullable=False),
    Column("struct_hash", LargeBinary(32), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("batch_id", BigInteger(), nullable=True),
    # The unique index on (device, seq) also serves every lookup by device alone.
    UniqueConstraint("device", "seq"),
    # Covers the console's series queries (migration 0006): a device's time range is read
    # from the index alone, values included, never from the wide rows.
    Index(None, "device", "timestamp", "schema", "values"),
    Index(None, "device", "id"),
    Index(None, "batch_id"),
    sqlite_autoincrement=True,
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", id_type(), Identity(), primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    CheckConstraint("scope IN ('admin', 'operator', 'reader')", name="scope"),
    sqlite_autoincrement=True,
)

batches = Table(
    "batches",
    metadata,
    Column("id", id_type(), Identity(), primary_key=True, autoincrement=True),
    Column("root", LargeBinary(32), nullable=False, unique=True),
    Column("reading_count", Integer(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("chain_id", BigInteger(), nullable=False),
    Column("contract", address_type(), nullable=False),
    Column("sealed_at", UTCDateTime(), nullable=False),
    Column("tx_hash", LargeBinary(32), nullable=True),
    Column("block_number", BigInteger(), nullable=True),
    Column("block_hash", LargeBinary(32), nullable=True),
    Column("block_time", BigInteger(), nullable=True),
    Column("anchored_at", UTCDateTime(), nullable=True),
    Column("attempts", Integer(), nullable=False, server_default=text("0")),
    Column("last_error", String(500), nullable=True),
    CheckConstraint("state IN ('sealed', 'anchored')", name="state"),
    CheckConstraint("reading_count > 0", name="reading_count"),
    Index(None, "state"),
    sqlite_autoincrement=True,
)
"""A Merkle batch of readings. ``sealed``: its readings are fixed (``readings.batch_id``) and its
root computed; ``anchored``: the root's ``ReadingAnchor`` transaction has its confirmations. A
reorg that drops the anchor sends the batch back to ``sealed``."""

# --- AI layer (migration 0003) --------------------------------------------------------------

ai_anomalies = Table(
    "ai_anomalies",
    metadata,
    Column("id", id_type(), Identity(), primary_key=True, autoincrement=True),
    Column(
        "reading_id",
        BigInteger(),
        ForeignKey("readings.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("device", address_type(), nullable=False),
    Column("schema", LargeBinary(32), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("timestamp", BigInteger(), nullable=False),
    Column("value", Double(), nullable=False),
    Column("score", Double(), nullable=False),
    Column("expected", Double(), nullable=False),
    Column("low", Double(), nullable=False),
    Column("high", Double(), nullable=False),
    Column("check", String(16), nullable=False),
    Column("detector", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("reading_id", "metric"),
    Index(None, "device", "id"),
    Index(None, "timestamp"),
    sqlite_autoincrement=True,
)
"""An anomaly event: the reading (its proof is at /v1/readings/{id}/proof), the metric, the value
and the range the detector expected. One per (reading, metric), so a worker that replays readings
after a restart never stores one twice."""

ai_models = Table(
    "ai_models",
    metadata,
    Column("device", address_type(), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("model", String(16), primary_key=True),
    Column("state", Text(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
"""A stream's model state as JSON (``detector``, ``trend``, ``profile``), so a restart resumes
without a new learning period."""

ai_cursors = Table(
    "ai_cursors",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("reading_id", BigInteger(), nullable=False),
)
"""How far (reading id) a worker has processed; saved in the same transaction as its models."""

# --- forecast-driven market orders (migration 0004) ------------------------------------------

market_mandates = Table(
    "market_mandates",
    metadata,
    Column("participant", address_type(), primary_key=True),
    Column("meter", address_type(), nullable=False),
    Column("ask_price", BigInteger(), nullable=False),
    Column("bid_price", BigInteger(), nullable=False),
    Column("max_wh", BigInteger(), nullable=False),
    Column("sell_share", Integer(), nullable=False),
    Column("enabled", Boolean(), nullable=False),
    Column("last_error", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("sell_share BETWEEN 1 AND 100", name="sell_share"),
)
"""A participant's opt-in to forecast-driven orders: the meter whose forecast drives them, the
lowest price it sells at and the highest it buys at (token units per Wh), the most Wh per order,
and the percentage of the forecast net export it offers."""

market_agent_orders = Table(
    "market_agent_orders",
    metadata,
    Column("participant", address_type(), primary_key=True),
    Column("interval", BigInteger(), primary_key=True),
    Column("side", String(8), nullable=False),
    Column("quantity_wh", BigInteger(), nullable=False),
    Column("price_per_wh", BigInteger(), nullable=False),
    Column("order_id", BigInteger(), nullable=True),
    Column("tx_hash", String(66), nullable=True),
    Column("expected_import_wh", Double(), nullable=True),
    Column("expected_export_wh", Double(), nullable=True),
    Column("note", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("side IN ('bid', 'ask', 'none')", name="side"),
)
"""What the agent did for a participant and interval: the order it placed (``bid``/``ask``, with
the on-chain order id and transaction), or ``none`` with the reason. One row per participant and
interval, so a restarted agent never orders twice."""

# --- alarms (migration 0005) ------------------------------------------------------------------

ai_alarms = Table(
    "ai_alarms",
    metadata,
    Column("id", id_type(), Identity(), primary_key=True, autoincrement=True),
    Column("device", address_type(), nullable=False),
    Column("schema", LargeBinary(32), nullable=False),
    Column("metrics", Text(), nullable=False),
    Column("check", String(16), nullable=False),
    Column("state", String(8), nullable=False),
    Column("acknowledged", Boolean(), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("first_seen_ms", BigInteger(), nullable=False),
    Column("last_seen_ms", BigInteger(), nullable=False),
    Column("count", BigInteger(), nullable=False),
    Column("max_score", Double(), nullable=False),
    Column("last_value", String(64), nullable=True),
    Column("expected_low", String(64), nullable=True),
    Column("expected_high", String(64), nullable=True),
    Column("reading_id", BigInteger(), nullable=True),
    Column("message", Text(), nullable=False),
    Column("acknowledged_at_ms", BigInteger(), nullable=True),
    Column("cleared_at_ms", BigInteger(), nullable=True),
    CheckConstraint("state IN ('active', 'cleared')", name="state"),
    CheckConstraint("severity IN ('critical', 'major', 'minor')", name="severity"),
    Index(None, "state", "id"),
    Index(None, "device", "id"),
    sqlite_autoincrement=True,
)
"""An alarm: a device's anomalies grouped while they continue (ThingsBoard's model): ``active`` or
``cleared`` (by the detector when the condition ends, or by an operator), acknowledged or not.
``metrics`` is a JSON array of the metric names involved; values are decimal strings."""

# --- the console (migration 0006) ------------------------------------------------------------

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "api_key_id",
        BigInteger(),
        ForeignKey("api_keys.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "api_key_id"),
)
"""A console sign-in: the SHA-256 of the cookie's token, the API key it was exchanged for (a
revoked key ends every session made from it), and the CSRF token every change must carry."""
