"""The store: one database, its migrations, and the repositories over it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from chainsense.store import migrate as migrations
from chainsense.store.alarms import AlarmRepository
from chainsense.store.anomalies import AnomalyRepository
from chainsense.store.api_keys import ApiKeyRepository
from chainsense.store.batches import BatchRepository
from chainsense.store.devices import DeviceRepository
from chainsense.store.engine import CONNECT_TIMEOUT_S, Database, WriteHealth, parse_url
from chainsense.store.errors import StoreError, StoreUnavailableError
from chainsense.store.market_agents import MarketAgentRepository
from chainsense.store.readings import ReadingRepository
from chainsense.store.sessions import SessionRepository

__all__ = ["RECENT_WRITE_FAILURE_S", "WRITE_PROBE_AFTER_S", "Store"]

RECENT_WRITE_FAILURE_S = 10.0
"""A write that failed this recently makes :meth:`Store.check_writes` fail without trying."""
WRITE_PROBE_AFTER_S = 30.0
"""With no committed write for this long, :meth:`Store.check_writes` tries one."""


def _free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


class Store:
    """Durable storage of devices, readings and API keys, on SQLite or PostgreSQL.

    Open it with :meth:`open` (it is ready when that returns) and :meth:`close` it; or use it as
    ``async with await Store.open(url) as store:``. It is safe to share between tasks, and
    several processes may open the same database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._closed = False
        self.readings = ReadingRepository(db)
        self.devices = DeviceRepository(db)
        self.api_keys = ApiKeyRepository(db)
        self.batches = BatchRepository(db)
        self.anomalies = AnomalyRepository(db)
        self.alarms = AlarmRepository(db)
        self.market_agents = MarketAgentRepository(db)
        self.sessions = SessionRepository(db)

    @classmethod
    async def open(cls, url: str | URL, *, migrate: bool = True) -> Store:
        """Connect to ``url`` and bring its schema to the latest migration.

        ``url`` is ``sqlite+aiosqlite:///<file>`` (the file and its directory are created) or
        ``postgresql+asyncpg://user:password@host:port/db`` (plain ``sqlite://`` and
        ``postgresql://`` are given those drivers). With ``migrate=False`` the schema must
        already be at the latest revision. Raises StoreUnavailableError if the database does not
        answer, StoreError if the URL or the schema cannot work.
        """
        parsed = parse_url(url)
        db = Database(parsed)
        try:
            if db.is_sqlite and parsed.database:
                await _make_parent_dir(db, Path(parsed.database))
            store = cls(db)
            await store.ping()
            if migrate:
                async with migrations.one_at_a_time(), db.write() as conn:
                    await conn.run_sync(migrations.upgrade)
            else:
                await store._check_revision()
        except BaseException:
            await db.dispose()
            raise
        return store

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._db.masked_url

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine, for tools and tests that need SQL the repositories lack."""
        return self._db.engine

    async def notify(self, channel: str, payloads: Sequence[str]) -> None:
        """PostgreSQL ``NOTIFY`` of ``payloads`` on ``channel``, in one transaction (delivered to
        the listeners, in order, when it commits); StoreError on SQLite."""
        if self.dialect != "postgresql":
            raise StoreError("NOTIFY needs PostgreSQL")
        async with self._db.write() as conn:
            for payload in payloads:
                await conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": channel, "payload": payload},
                )

    async def ping(self, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Return if the database answers a query within ``timeout`` seconds; else raise
        StoreUnavailableError (naming the masked URL)."""
        if self._closed:
            raise StoreError(f"the store at {self.url} is closed")
        try:
            async with asyncio.timeout(timeout), self._db.read() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise StoreUnavailableError(self.url, f"no answer within {timeout:g} s") from exc

    @property
    def write_health(self) -> WriteHealth:
        """How this process's recent write transactions went."""
        return self._db.write_health

    async def check_writes(
        self, *, timeout: float = CONNECT_TIMEOUT_S, min_free_bytes: int = 0
    ) -> str:
        """Whether writes work now; a line saying so, else StoreUnavailableError saying why.

        - SQLite: the database's file system must have ``min_free_bytes`` free;
        - writes that failed in the last :data:`RECENT_WRITE_FAILURE_S` seconds (the database
          down, its disk full) mean failing; no need to try one;
        - after an older failure, or with no write in :data:`WRITE_PROBE_AFTER_S` seconds, one
          small write transaction is tried within ``timeout`` seconds (it rewrites the schema
          revision row with its own value).
        """
        if self._closed:
            raise StoreError(f"the store at {self.url} is closed")
        db = self._db
        if db.is_sqlite and db.url.database:
            folder = Path(db.url.database).parent
            free = await asyncio.to_thread(_free_bytes, folder)
            if free < min_free_bytes:
                raise StoreUnavailableError(
                    self.url,
                    f"disk full: {free / 2**20:.1f} MiB free on {folder}, writes need "
                    f"{min_free_bytes / 2**20:.0f} MiB (CHAINSENSE_MIN_FREE_DISK_MB)",
                )
        health = db.write_health
        now = time.monotonic()
        if health.failing_since is not None and now - health.last_failed < RECENT_WRITE_FAILURE_S:
            raise StoreUnavailableError(
                self.url,
                f"writes failing for {now - health.failing_since:.0f} s: {health.last_error}",
            )
        if (
            health.failing_since is None
            and health.last_ok is not None
            and now - health.last_ok < WRITE_PROBE_AFTER_S
        ):
            return f"ok (last write {now - health.last_ok:.1f} s ago)"
        try:
            async with asyncio.timeout(timeout), db.write() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        except TimeoutError as exc:
            reason = f"a write did not complete within {timeout:g} s"
            health.failed(reason)
            raise StoreUnavailableError(self.url, reason) from exc
        return "ok (write probe committed)"

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        self._closed = True
        await self._db.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    async def _check_revision(self) -> None:
        async with self._db.read() as conn:
            current = await conn.run_sync(migrations.current_revision)
        head = migrations.head_revision()
        if current != head:
            raise StoreError(
                f"the database at {self.url} is at schema revision {current or 'none'}, "
                f"this version needs {head}: open it once with migrate=True"
            )


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


async def _make_parent_dir(db: Database, path: Path) -> None:
    try:
        await asyncio.to_thread(_mkdir, path.parent)
    except OSError as exc:
        raise StoreUnavailableError(db.masked_url, f"{type(exc).__name__}: {exc}") from exc
