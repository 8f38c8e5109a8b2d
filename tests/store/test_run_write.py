"""``Database.run_write``: a synchronous transaction body, committed before it returns, rolled
back whole on an error; on SQLite run on the store's writer thread, holding the write lock until
that thread is done even when the caller gives up."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from chainsense.store import Store, StoreError

pytestmark = pytest.mark.timeout(120)


def _cursor(conn: Connection, name: str, value: int) -> None:
    conn.execute(
        text("INSERT INTO ai_cursors (name, reading_id) VALUES (:n, :v)"), {"n": name, "v": value}
    )


async def _cursors(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT name, reading_id FROM ai_cursors"))
        return {str(name): int(value) for name, value in rows}


async def test_run_write_commits_and_rolls_back(store: Store) -> None:
    db = store._db

    def two(conn: Connection) -> int:
        _cursor(conn, "a", 1)
        _cursor(conn, "b", 2)
        return 7

    assert await db.run_write(two) == 7
    assert await _cursors(store) == {"a": 1, "b": 2}

    def half_then_fail(conn: Connection) -> None:
        _cursor(conn, "c", 3)
        raise StoreError("refused half-way")

    with pytest.raises(StoreError, match="half-way"):
        await db.run_write(half_then_fail)
    assert await _cursors(store) == {"a": 1, "b": 2}, "the failed transaction left a row"


async def test_sqlite_runs_the_body_off_the_event_loop(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/data/chainsense.db")
    try:
        seen: list[int] = []

        def body(conn: Connection) -> None:
            seen.append(threading.get_ident())
            _cursor(conn, "x", 1)

        await store._db.run_write(body)
        assert seen
        assert seen[0] != threading.get_ident()
    finally:
        await store.close()


async def test_sqlite_cancelled_caller_keeps_the_lock_until_the_body_is_done(
    tmp_path: Path,
) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/data/chainsense.db")
    db = store._db
    try:
        finished: list[float] = []

        def slow(conn: Connection) -> None:
            _cursor(conn, "slow", 1)
            time.sleep(0.4)
            finished.append(time.monotonic())

        task = asyncio.create_task(db.run_write(slow))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # run_write gives its lock up (and ends) only once the body in the thread committed
        assert finished, "the lock was given up while the body still ran"
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO ai_cursors (name, reading_id) VALUES ('n', 2)"))
        assert await _cursors(store) == {"slow": 1, "n": 2}
    finally:
        await store.close()
