"""Alembic migrations, shipped inside the package and run programmatically.

:meth:`Store.open <chainsense.store.Store.open>` runs ``upgrade head`` in one write transaction:
on SQLite under ``BEGIN IMMEDIATE``, on PostgreSQL under a transaction-scoped advisory lock, so
several processes starting at once migrate exactly once. :func:`alembic_config` gives the same
configuration to the ``alembic`` command API (for example to print the SQL offline).

Alembic keeps the running migration in module globals (``alembic.context``, ``alembic.op``), so
two migrations of one process must not overlap, even on different databases: the greenlets of
two stores opening on one event loop interleave inside Alembic, and one's context replaces the
other's (measured: 4 new SQLite files opened together failed in 10 rounds out of 10, with
``KeyError: 'script'`` or "table devices already exists"). :func:`one_at_a_time` is held around
each migration.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from chainsense.store.engine import holding, mask_url

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "one_at_a_time",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_PG_MIGRATION_LOCK = 0x43534D494752  # "CSMIGR": the advisory lock that serializes migrations
_PROCESS_MIGRATION_LOCK = threading.Lock()  # Alembic's globals: one migration per process


@asynccontextmanager
async def one_at_a_time() -> AsyncIterator[None]:
    """No other migration of this process (any thread, any event loop) runs during the block."""
    async with holding(_PROCESS_MIGRATION_LOCK):
        yield


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """An Alembic Config for the shipped migrations, on a URL or on an open sync connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        config.attributes["masked_url"] = mask_url(url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the shipped migrations have a head"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """``alembic upgrade head`` on a sync connection already inside a write transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(connection=connection), "head")
