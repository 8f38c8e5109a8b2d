"""Leader election on PostgreSQL (store/leader.py): one leader per role across sessions, a
fence that fails once the lock is gone, and a takeover within seconds when the leader's session
dies (what a `kill -9` of the leader process does to it)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg  # type: ignore[import-untyped]
import pytest

from chainsense.store.engine import parse_url
from chainsense.store.leader import Leadership, NotLeaderError

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
