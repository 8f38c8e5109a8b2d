"""Leader election per role, for several processes on one PostgreSQL database.

A singleton (the anchorer, the AI worker, the market agent, the demo fleet) must run exactly once
across every process and host sharing a database. Each process runs :meth:`Leadership.hold` for
the role; it keeps trying ``pg_try_advisory_lock`` on a connection of its own (not from the pool,
so that no other work ever holds or releases the lock by accident). The process that gets it runs
the role's job; the others wait and retry every ``retry_s`` seconds.

The lock lives exactly as long as that connection's session: if the leader dies (``kill -9``, a
host lost), PostgreSQL ends the session and frees the lock, and another process takes over within
``retry_s`` seconds (plus TCP keepalive time for a host that vanished without closing its socket).

Fencing: each term gets a token (an increasing number, from a sequence, so tokens of successive
leaders are ordered across processes). :meth:`Leadership.fence` checks, on the dedicated
connection, that this session still holds the lock, and raises :class:`NotLeaderError` otherwise;
a leader calls it before each write it makes (the anchorer does, before sealing, sending and
recording). A leader whose connection has died thus stops writing at its next check, and its job
is cancelled by the watchdog within ``retry_s`` seconds.

Which process leads: every election session is named ``chainsense-leader:<role>:<os pid>``
(``application_name``), and a follower keeps its one session between attempts, so
``SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE
l.locktype = 'advisory' AND l.granted AND l.classid = 1129532484`` (``_NAMESPACE``) lists the
leaders (docs/operations.md).

SQLite has one process by design: there, :meth:`hold` just runs the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.engine import URL

from chainsense.errors import ChainSenseError

__all__ = ["Leadership", "NotLeaderError", "application_name", "role_key"]

log = logging.getLogger(__name__)

_NAMESPACE = 0x43534C44  # "CSLD": the first key of every ChainSense advisory lock


class NotLeaderError(ChainSenseError):
    """This process no longer holds the role's lock: it must not write."""


def role_key(role: str) -> int:
    """The second advisory-lock key of ``role`` (a stable signed 32-bit number)."""
    return int.from_bytes(hashlib.sha256(role.encode()).digest()[:4], "big", signed=True)


class Leadership:
    """One role's election in this process. Run :meth:`hold` as a task."""

    def __init__(
        self,
        role: str,
        url: URL | None,
        *,
        retry_s: float = 1.0,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.role = role
        self.url = url
        self.retry_s = retry_s
        self.on_change = on_change
        self.token: int | None = None
        """The fencing token of the current term, None when not the leader."""
        self._conn: Any = None
        self.backend_pid: int | None = None
        """The PostgreSQL backend of the dedicated connection (for diagnostics)."""
        self._query = asyncio.Lock()  # one query at a time on the dedicated connection

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    async def fence(self) -> None:
        """Return if this process still holds the role; else raise NotLeaderError."""
        if self.url is None:
            return
        conn = self._conn
        if conn is None or self.token is None:
            raise NotLeaderError(f"not the {self.role} leader")
        try:
            async with self._query, asyncio.timeout(max(1.0, self.retry_s)):
                held = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND classid = $1::oid AND objid = $2::oid",
                    _NAMESPACE & 0xFFFFFFFF,
                    role_key(self.role) & 0xFFFFFFFF,
                )
        except Exception as exc:
            raise NotLeaderError(f"{self.role} leadership lost: {exc}") from exc
        if not held:
            raise NotLeaderError(f"{self.role} leadership lost")

    async def holder(self) -> str | None:
        """Who holds the role now, in any process: its election session's ``application_name``
        (``chainsense-leader:<role>:<os pid>``), or None when nobody does (or this process has
        no session to ask, between reconnection attempts)."""
        if self.url is None:
            return application_name(self.role) if self.is_leader else None
        conn = self._conn
        if conn is None:
            return None
        try:
            async with self._query, asyncio.timeout(max(1.0, self.retry_s)):
                name: str | None = await conn.fetchval(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = "
                    "current_database()) AND l.classid = $1::oid AND l.objid = $2::oid",
                    _NAMESPACE & 0xFFFFFFFF,
                    role_key(self.role) & 0xFFFFFFFF,
                )
        except Exception as exc:  # asyncpg's errors, a timeout: not known now
            log.debug("%s holder: %s", self.role, exc)
            return None
        return name

    async def hold(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``job`` whenever this process is the role's leader, until cancelled."""
        if self.url is None:
            self._changed(True, 0)
            try:
                await job()
            finally:
                self._changed(False, None)
            return
        try:
            while True:
                try:
                    if await self._acquire():
                        await self._lead(job)
                        # a new session for the next term: nothing of this one carries over
                        await self._drop()
                except (OSError, TimeoutError) as exc:
                    log.debug("%s election: database unavailable: %s", self.role, exc)
                    await self._drop()
                except Exception as exc:  # asyncpg's errors, NotLeaderError: the term ended
                    log.debug("%s election: %s", self.role, exc)
                    await self._drop()
                # A follower keeps its session between attempts (one connection per role, not
                # a new PostgreSQL backend every retry_s seconds).
                await asyncio.sleep(self.retry_s)
        finally:
            await self._drop()

    async def _acquire(self) -> bool:
        import asyncpg  # type: ignore[import-untyped]

        async with self._query:
            if self._conn is None:
                self._conn = await asyncpg.connect(
                    _dsn(self.url),
                    timeout=10,
                    # names the OS process in pg_stat_activity: which process leads is one
                    # query away (pg_locks joined with pg_stat_activity on pid)
                    server_settings={"application_name": application_name(self.role)},
                )
                self.backend_pid = await self._conn.fetchval("SELECT pg_backend_pid()")
            got = await self._conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", _NAMESPACE, role_key(self.role)
            )
            if not got:
                return False
            # the term's token: the database clock in microseconds, increasing across terms
            token = await self._conn.fetchval(
                "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint"
            )
        self._changed(True, int(token))
        return True

    async def _lead(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.create_task(job(), name=f"leader-{self.role}")
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.retry_s)
                if done:
                    break
                await self.fence()  # NotLeaderError ends the term
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self._changed(False, None)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s stopped: %s", self.role, task.exception())

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _changed(self, leader: bool, token: int | None) -> None:
        was = self.token is not None
        self.token = token
        if leader != was:
            if self.url is not None:
                log.info(
                    "leader change: process %d %s the %s role",
                    os.getpid(),
                    "now holds" if leader else "no longer holds",
                    self.role,
                )
            if self.on_change is not None:
                self.on_change(self.role, leader)

    async def close(self) -> None:
        await self._drop()


def application_name(role: str, pid: int | None = None) -> str:
    """The ``application_name`` of a process's election session for ``role``:
    ``chainsense-leader:<role>:<os pid>``."""
    return f"chainsense-leader:{role}:{os.getpid() if pid is None else pid}"


def _dsn(url: URL | None) -> str:
    assert url is not None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
