"""Group commit drained on SQLite's writer thread (telemetry/committer.py, ``thread_writer``):
the same outcomes as the loop-driven drain, the next commit starts without the event loop, and
async write transactions are never interleaved with it."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from chainsense.store import InsertResult, NewReading, Outcome, Store, StoreUnavailableError
from chainsense.telemetry.committer import GroupCommitter

from ._support import address, reading, register, seqs_in_id_order


async def _store(tmp_path: Path) -> Store:
    return await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'chainsense.db'}")


def _committer(store: Store) -> GroupCommitter:
    assert store.readings.writes_in_thread()
    return GroupCommitter(store.readings.insert_batch, thread_writer=store.readings)


async def test_outcomes_are_those_of_the_loop_drain(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        devices = [address(i) for i in range(40)]
        await register(store, *devices)
        committer = _committer(store)
        requests = [[reading(d, seq)] for seq in range(1, 6) for d in devices]
        results = await asyncio.gather(*(committer.submit(rows) for rows in requests))
        assert all(len(r) == 1 and r[0].outcome is Outcome.STORED for r in results)
        assert committer.stats.requests == len(requests)
        assert committer.stats.commits < len(requests)
        for d in devices:
            assert await seqs_in_id_order(store, d) == [1, 2, 3, 4, 5]
        first, stale, replay, conflict = await asyncio.gather(
            committer.submit([reading(devices[0], 7)]),
            committer.submit([reading(devices[0], 6)]),  # after 7 in arrival order
            committer.submit([reading(devices[0], 7)]),
            committer.submit([reading(devices[1], 5, variant=1)]),
        )
        assert first[0].outcome is Outcome.STORED
        assert stale[0].outcome is Outcome.STALE
        assert replay[0].outcome is Outcome.DUPLICATE
        assert replay[0].reading_id == first[0].reading_id
        assert conflict[0].outcome is Outcome.CONFLICT
        bad = dataclasses.replace(reading(devices[2], 9), signature=b"short")
        good, broken = await asyncio.gather(
            committer.submit([reading(devices[2], 8)]),
            committer.submit([bad]),
            return_exceptions=True,
        )
        assert isinstance(good, list)
        assert good[0].outcome is Outcome.STORED
        assert isinstance(broken, ValueError)
    finally:
        await store.close()


async def test_the_next_commit_starts_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        await register(store, address(1), address(2))
        committer = _committer(store)
        first = asyncio.ensure_future(committer.submit([reading(address(1), 1)]))
        await asyncio.sleep(0)  # submitted: its commit starts on the writer thread
        second = asyncio.ensure_future(committer.submit([reading(address(2), 1)]))
        await asyncio.sleep(0)
        # The loop is now blocked: with a loop-driven drain the second group could only start
        # after the loop resumed the first. Here both are committed meanwhile.
        deadline = time.monotonic() + 10
        count = 0
        with sqlite3.connect(tmp_path / "chainsense.db") as db:
            while count < 2 and time.monotonic() < deadline:
                time.sleep(0.01)  # noqa: ASYNC251 - the point: the loop is blocked
                count = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        assert count == 2
        assert not first.done()  # the loop has not been back to answer yet
        assert [r[0].outcome for r in await asyncio.gather(first, second)] == [
            Outcome.STORED,
            Outcome.STORED,
        ]
    finally:
        await store.close()


async def test_async_write_transactions_are_not_interleaved(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        await register(store, address(1))
        committer = _committer(store)
        db = store.readings._db  # the async write() path other repositories take
        async with db.write():
            pending = asyncio.ensure_future(committer.submit([reading(address(1), 1)]))
            await asyncio.sleep(0.2)
            assert not pending.done()  # waits for the async transaction, no busy error
        assert (await pending)[0].outcome is Outcome.STORED
    finally:
        await store.close()


async def test_a_store_failure_reaches_every_request_of_the_group() -> None:
    jobs: list[Callable[[], None]] = []

    class Down:
        def submit_to_writer(self, job: Callable[[], None]) -> None:
            jobs.append(job)

        def insert_batch_in_writer(self, rows: Sequence[NewReading]) -> list[InsertResult]:
            raise StoreUnavailableError("sqlite:///x", "disk I/O error")

    async def unused(rows: Sequence[NewReading]) -> list[InsertResult]:
        raise AssertionError("the loop drain ran")

    committer = GroupCommitter(unused, thread_writer=Down())
    waiting = [
        asyncio.ensure_future(committer.submit([reading(address(1), s)])) for s in range(1, 4)
    ]
    await asyncio.sleep(0)
    assert len(jobs) == 1  # one job for the three
    await asyncio.to_thread(jobs.pop())
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    assert not jobs
