"""Engines and connections: URL handling, SQLite pragmas and locking, error translation.

SQLite is opened in WAL mode with ``synchronous=FULL`` (a commit is on disk before
``insert_batch`` returns, so an acknowledged reading survives a power cut, not only a crash),
``foreign_keys=ON`` and a busy timeout. SQLAlchemy emits ``BEGIN`` itself (the sqlite3 driver's
legacy transaction handling is switched off): ``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes,
so a write transaction holds the database write lock from its first statement and concurrent
writers (tasks or processes) queue instead of failing half-way. PostgreSQL writers lock the
rows they depend on (``SELECT ... FOR UPDATE``) instead.

The hot write transactions (the group commit of readings, the AI worker's checkpoint, sealing)
are plain functions of a synchronous connection run with :meth:`Database.run_write`. On SQLite
the whole transaction runs in one hop on the store's writer thread, over its own synchronous
connection: the event loop waits for one result instead of coming round once per statement
(aiosqlite answers each statement through the loop, so a transaction of ten statements held the
write lock for ten turns of a busy loop: measured 300-1,100 ms per AI checkpoint under 200
devices, while the group commit waited for the lock). On PostgreSQL the same function runs
through the async driver (``AsyncConnection.run_sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util.concurrency import await_, in_greenlet

from chainsense.redact import redact_url, scrub, url_secrets
from chainsense.store.errors import StoreError, StoreUnavailableError

__all__ = ["Database", "WriteHealth", "default_url", "mask_url", "parse_url"]

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for the write lock before the store reports it unavailable."""
CONNECT_TIMEOUT_S = 10.0

_BEGIN_OPTION = "chainsense_sqlite_begin"
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_ALIASES = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "postgresql+asyncpg": "postgresql",
}


def default_url(data_dir: Path | str) -> str:
    """The embedded default: ``sqlite+aiosqlite:///<data_dir>/chainsense.db``."""
    return f"sqlite+aiosqlite:///{Path(data_dir) / 'chainsense.db'}"


def mask_url(url: str | URL) -> str:
    """The URL with its password and query values replaced by ``***`` (safe to log or show;
    :func:`chainsense.redact.redact_url`)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable database URL>"
    return redact_url(parsed.render_as_string(hide_password=False), keep_user=True)


def parse_url(url: str | URL) -> URL:
    """The async-driver URL for a SQLite or PostgreSQL URL; StoreError for anything else.

    ``sqlite:///`` and ``postgresql://`` (or ``postgres://``) are accepted and given their async
    driver (aiosqlite, asyncpg). In-memory SQLite is refused: every pooled connection would see
    its own empty database.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {mask_url(url)}") from exc
    dialect = _ALIASES.get(parsed.drivername)
    if dialect is None:
        raise StoreError(
            f"unsupported database URL {mask_url(parsed)}: use sqlite+aiosqlite:///<file> "
            "or postgresql+asyncpg://user:password@host/db"
        )
    parsed = parsed.set(drivername=_DRIVERS[dialect])
    if dialect == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreError("in-memory SQLite is not supported: give the store a file")
    return parsed


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take BEGIN away from the driver (see the module docstring), then set the pragmas.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        mode = _switch_to_wal(cursor)
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (journal_mode is {mode})")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


@asynccontextmanager
async def holding(lock: threading.Lock) -> AsyncIterator[None]:
    """Hold a thread lock for the block, waiting for it in a worker thread, not on the loop."""
    if not lock.acquire(blocking=False):
        taking = asyncio.get_running_loop().run_in_executor(None, lock.acquire)
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            taking.add_done_callback(lambda _: lock.release())
            raise
    try:
        yield
    finally:
        lock.release()


def _switch_to_wal(cursor: Any) -> str:
    """``PRAGMA journal_mode=WAL``, tried again while another connection holds the lock.

    Turning a new file to WAL needs its exclusive lock. When several connections (processes, or
    stores of one process) open a new database at once, SQLite answers "database is locked" at
    once instead of calling the busy handler, as waiting could deadlock: measured 4 failed opens
    in 40 rounds of 8 stores opening one new file together. The pause is slept through the event
    loop when the connection is an async one, so the store holding the lock can go on.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return str(cursor.fetchone()[0])
        except Exception as exc:
            if "database is locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        if in_greenlet():
            await_(asyncio.sleep(pause))
        else:
            time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


_UNAVAILABLE = (OperationalError, InterfaceError, OSError, TimeoutError)
T = TypeVar("T")

#: SQLSTATE codes (or their two-character classes) of a PostgreSQL that cannot serve now, as
#: opposed to one that refused this statement: connection exceptions (08), insufficient resources
#: such as a full disk (53), a server shutting down or starting (57P01-57P03), a system or I/O
#: error (58), a read-only standby after a failover (25006). They answer 503, not 500.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "58", "25006")


def _unavailable_sqlstate(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(code, str) and code.startswith(_UNAVAILABLE_SQLSTATES)


@dataclass
class WriteHealth:
    """How this process's last write transactions went (for ``/readyz``): a store that is down
    or full fails every write while reads may still work."""

    last_ok: float | None = None
    """``time.monotonic()`` of the last committed write."""
    failing_since: float | None = None
    last_failed: float = 0.0
    last_error: str | None = None

    def succeeded(self) -> None:
        self.last_ok = time.monotonic()
        self.failing_since = None
        self.last_error = None

    def failed(self, reason: str) -> None:
        self.last_failed = time.monotonic()
        if self.failing_since is None:
            self.failing_since = self.last_failed
        self.last_error = reason


class Database:
    """One engine and the connection discipline every repository follows."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self._secrets = url_secrets(url.render_as_string(hide_password=False))
        self.dialect: str = _ALIASES[url.drivername]
        self.write_health = WriteHealth()
        kwargs: dict[str, Any] = {
            "json_serializer": functools.partial(json.dumps, separators=(",", ":")),
        }
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
        else:
            kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S}
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # SQLite has one writer at a time: writers of this process queue here, in order, instead
        # of sleeping in SQLite's busy handler (other processes still meet the busy timeout).
        self._write_lock: asyncio.Lock | contextlib.nullcontext[None] = (
            asyncio.Lock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )
        self._sync_engine: Engine | None = None
        self._sync_writer: Engine | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        # Held by the writer thread's jobs that run without the asyncio lock above (the
        # readings' group commit: submit_to_writer), and by async write() transactions; jobs of
        # run_write are already ordered after those in the writer thread's queue.
        self._thread_lock = threading.Lock()
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_on_begin)
            self._writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        else:
            self._writer = self.engine

    def _reason(self, exc: BaseException) -> str:
        """What went wrong, without the URL's secrets (a driver may quote its DSN)."""
        return scrub(_reason(exc), self._secrets)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def translate(self) -> AsyncIterator[None]:
        """Turn driver failures into StoreUnavailableError / StoreError (ValueError passes)."""
        try:
            yield
        except StoreError:
            raise
        except (SQLAlchemyError, *_UNAVAILABLE) as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: BaseException) -> StoreError:
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailableError(self.masked_url, self._reason(exc))
        if isinstance(exc, DBAPIError) and (
            exc.connection_invalidated or _unavailable_sqlstate(exc)
        ):
            return StoreUnavailableError(self.masked_url, self._reason(exc))
        return StoreError(f"database error at {self.masked_url}: {self._reason(exc)}")

    async def _connect(self, engine: AsyncEngine) -> AsyncConnection:
        """A pooled connection; any failure to get one means the database is unavailable."""
        conn = engine.connect()
        try:
            await conn.start()
        except StoreError:
            raise
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(self.masked_url, self._reason(exc)) from exc
        return conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read transaction (rolled back at the end)."""
        conn = await self._connect(self.engine)
        try:
            async with self.translate():
                yield conn
        finally:
            async with self.translate():
                await conn.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed (durably) when the block exits.
        Its outcome goes to :attr:`write_health` (only an unavailable store counts as failing)."""
        try:
            async with self._write_lock, self._thread_writes_excluded():
                conn = await self._connect(self._writer)
                try:
                    async with self.translate(), conn.begin():
                        yield conn
                finally:
                    async with self.translate():
                        await conn.close()
        except StoreUnavailableError as exc:
            self.write_health.failed(exc.reason)
            raise
        self.write_health.succeeded()

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in one write transaction, committed (durably) before this
        returns; ``fn`` is a plain function of a synchronous SQLAlchemy Connection.

        SQLite: under the same lock as :meth:`write`, the whole transaction runs on the store's
        writer thread (one thread, one connection of its own, ``BEGIN IMMEDIATE``), so the event
        loop is not needed between statements. If the caller is cancelled, the lock is kept
        until that thread has finished the transaction. PostgreSQL: through the async driver.
        """
        if not self.is_sqlite:
            async with self.write() as conn:
                return await conn.run_sync(fn, *args)
        try:
            result = await self._run_sqlite_write(fn, *args)
        except StoreUnavailableError as exc:
            self.write_health.failed(exc.reason)
            raise
        self.write_health.succeeded()
        return result

    async def _run_sqlite_write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._write_lock:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(
                self._writer_executor(), functools.partial(self._transact, fn, *args)
            )
            async with self.translate():
                try:
                    return await asyncio.shield(pending)
                except asyncio.CancelledError:
                    # the transaction goes on in the thread: hold the lock until it ends
                    await asyncio.wait([pending])
                    raise

    @asynccontextmanager
    async def _thread_writes_excluded(self) -> AsyncIterator[None]:
        """SQLite: no job of :meth:`submit_to_writer` writes while the block runs."""
        if not self.is_sqlite:
            yield
            return
        async with holding(self._thread_lock):
            yield

    def submit_to_writer(self, job: Callable[[], None]) -> None:
        """SQLite: run ``job`` on the store's writer thread, after the jobs queued before it.
        Raises RuntimeError once the store is closed."""
        self._writer_executor().submit(job)

    def transact_in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """On the writer thread, in a job of :meth:`submit_to_writer`: ``fn(connection, *args)``
        in one write transaction, committed (durably) before this returns; driver failures
        raised as :meth:`translate` raises them. The event loop is not involved: a group commit
        can follow the previous one at once, however busy the loop is."""
        with self._thread_lock:
            if self._writer_thread is None:  # closing: do not open a new writer connection
                raise StoreUnavailableError(self.masked_url, "the store is closed")
            try:
                result = self._transact(fn, *args)
            except StoreError:
                raise
            except (SQLAlchemyError, *_UNAVAILABLE) as exc:
                error = self._translated(exc)
                if isinstance(error, StoreUnavailableError):
                    self.write_health.failed(error.reason)
                raise error from exc
        self.write_health.succeeded()
        return result

    def _writer_executor(self) -> ThreadPoolExecutor:
        if self._writer_thread is None:
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        return self._writer_thread

    def _transact(self, fn: Callable[..., T], *args: Any) -> T:
        """On the writer thread: one transaction over the synchronous writer connection."""
        if self._sync_writer is None:
            engine = create_engine(
                self.url.set(drivername="sqlite"),
                connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
                json_serializer=functools.partial(json.dumps, separators=(",", ":")),
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            self._sync_engine = engine
            self._sync_writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with self._sync_writer.connect() as conn, conn.begin():
            return fn(conn, *args)

    async def dispose(self) -> None:
        if self._writer_thread is not None:
            executor, self._writer_thread = self._writer_thread, None
            writer, self._sync_engine, self._sync_writer = self._sync_engine, None, None
            if writer is not None:
                await asyncio.get_running_loop().run_in_executor(executor, writer.dispose)
            await asyncio.to_thread(executor.shutdown)
        await self.engine.dispose()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    inner = orig if isinstance(orig, BaseException) else exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__
