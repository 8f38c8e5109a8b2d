"""Leader election on PostgreSQL (store/leader.py): one leader per role across sessions, a
fence that fails once the lock is gone, and a takeover within seconds when the leader's session
dies (what a `kill -9` of the leader process does to it)."""

from __future__ import annotations

import asyncio
import contextlib
import os

import asyncpg  # type: ignore[import-untyped]
import pytest

from chainsense.store.engine import parse_url
from chainsense.store.leader import Leadership, NotLeaderError, application_name, role_key

pytestmark = pytest.mark.postgres


async def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_one_leader_then_takeover_when_its_session_dies(postgres_url: str) -> None:
    url = parse_url(postgres_url)
    running: list[str] = []
    changes: list[tuple[str, str, bool]] = []

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            running.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)

        return run

    a = Leadership(
        "test-role", url, retry_s=0.2, on_change=lambda r, held: changes.append(("a", r, held))
    )
    b = Leadership(
        "test-role", url, retry_s=0.2, on_change=lambda r, held: changes.append(("b", r, held))
    )
    task_a = asyncio.create_task(a.hold(job("a")))
    await _until(lambda: running == ["a"])
    task_b = asyncio.create_task(b.hold(job("b")))
    await asyncio.sleep(1.0)
    assert running == ["a"]  # exactly one runs
    await a.fence()
    with pytest.raises(NotLeaderError):
        await b.fence()
    token_a = a.token
    assert token_a is not None

    # The leader's session dies (as when its process is killed): its lock goes with it.
    pid = a.backend_pid
    assert pid is not None
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    with pytest.raises(NotLeaderError):
        await a.fence()
    await _until(lambda: running == ["b"], timeout=5.0)
    assert b.token is not None
    assert b.token > token_a  # the new term's token is newer
    await b.fence()
    assert ("a", "test-role", False) in changes
    assert ("b", "test-role", True) in changes

    for task in (task_a, task_b):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert running == []


async def test_without_postgres_the_job_just_runs() -> None:
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    lead = Leadership("anchorer", None)
    await lead.hold(job)
    assert ran.is_set()
    await lead.fence()  # a single process is always its own leader


async def test_a_follower_keeps_one_session_and_sessions_name_their_process(
    postgres_url: str,
) -> None:
    """A follower retries on the session it has (not a new backend every attempt), and
    pg_stat_activity names the OS process of each election session."""
    url = parse_url(postgres_url)

    async def forever() -> None:
        await asyncio.Event().wait()

    a = Leadership("follower-role", url, retry_s=0.1)
    b = Leadership("follower-role", url, retry_s=0.1)
    task_a = asyncio.create_task(a.hold(forever))
    await _until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.hold(forever))
    await _until(lambda: b.backend_pid is not None)
    first = b.backend_pid
    await asyncio.sleep(1.0)  # ~10 attempts
    assert not b.is_leader
    assert b.backend_pid == first
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        rows = await admin.fetch(
            "SELECT a.application_name, l.granted FROM pg_locks l "
            "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' "
            "AND l.objid = $1::oid",
            role_key("follower-role") & 0xFFFFFFFF,
        )
        names = await admin.fetch(
            "SELECT pid, application_name FROM pg_stat_activity WHERE pid = ANY($1::int[])",
            [a.backend_pid, b.backend_pid],
        )
    finally:
        await admin.close()
    assert [(r["application_name"], r["granted"]) for r in rows] == [
        (application_name("follower-role"), True)
    ]
    assert application_name("follower-role") == f"chainsense-leader:follower-role:{os.getpid()}"
    assert {r["pid"]: r["application_name"] for r in names} == {
        a.backend_pid: application_name("follower-role"),
        b.backend_pid: application_name("follower-role"),
    }
    for task in (task_a, task_b):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_follower_sees_who_holds_the_role(postgres_url: str) -> None:
    url = parse_url(postgres_url)

    async def forever() -> None:
        await asyncio.Event().wait()

    a = Leadership("holder-role", url, retry_s=0.1)
    b = Leadership("holder-role", url, retry_s=30)  # follows, and does not try again soon
    task_a = asyncio.create_task(a.hold(forever))
    await _until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.hold(forever))
    await _until(lambda: b.backend_pid is not None)
    assert not b.is_leader
    assert await b.holder() == application_name("holder-role")
    task_a.cancel()  # the leader stops: its session and lock go
    with contextlib.suppress(asyncio.CancelledError):
        await task_a
    assert await b.holder() is None
    task_b.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task_b
    assert await Leadership("holder-role", None).holder() is None  # SQLite, not leading
