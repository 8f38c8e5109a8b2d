"""Group commit (telemetry/committer.py) against both backends: concurrent requests share one
transaction, and each gets exactly the outcome it would get committed alone, in order."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from chainsense.store import InsertResult, NewReading, Outcome, Store, StoreUnavailableError
from chainsense.telemetry.committer import GroupCommitter

from ._support import address, reading, register, seqs_in_id_order


async def test_concurrent_requests_share_commits_and_keep_their_outcomes(store: Store) -> None:
    devices = [address(i) for i in range(40)]
    await register(store, *devices)
    committer = GroupCommitter(store.readings.insert_batch)
    # 40 devices x 5 requests of one reading each, all at once; plus a replay and a conflict
    requests = [[reading(d, seq)] for seq in range(1, 6) for d in devices]
    results = await asyncio.gather(*(committer.submit(rows) for rows in requests))
    assert all(len(r) == 1 and r[0].outcome is Outcome.STORED for r in results)
    assert committer.stats.requests == len(requests)
    assert committer.stats.commits < len(requests)  # grouped: fewer commits than requests
    ids = [r[0].reading_id for r in results]
    assert len(set(ids)) == len(ids)
    stored = {row.id: (row.device, row.seq) for row in await store.readings.query(limit=1000)}
    for rows, result in zip(requests, results, strict=True):
        assert stored[result[0].reading_id] == (rows[0].device, rows[0].seq)
    for d in devices:
        assert await seqs_in_id_order(store, d) == [1, 2, 3, 4, 5]

    replay, conflict, stale = await asyncio.gather(
        committer.submit([reading(devices[0], 5)]),
        committer.submit([reading(devices[1], 5, variant=1)]),
        committer.submit([reading(devices[2], 3, variant=1), reading(devices[2], 6)]),
    )
    assert replay[0].outcome is Outcome.DUPLICATE
    assert conflict[0].outcome is Outcome.CONFLICT
    assert [r.outcome for r in stale] == [Outcome.CONFLICT, Outcome.STORED]


async def test_same_device_in_one_group_is_decided_in_arrival_order(store: Store) -> None:
    device = address(1)
    await register(store, device)
    committer = GroupCommitter(store.readings.insert_batch)
    first, second, third = await asyncio.gather(
        committer.submit([reading(device, 2)]),
        committer.submit([reading(device, 1)]),  # after 2 in arrival order: not increasing
        committer.submit([reading(device, 2)]),  # identical replay of the first
    )
    assert first[0].outcome is Outcome.STORED
    assert second[0].outcome is Outcome.STALE
    assert third[0].outcome is Outcome.DUPLICATE
    assert third[0].reading_id == first[0].reading_id


async def test_a_malformed_request_does_not_fail_the_others(store: Store) -> None:
    device = address(1)
    await register(store, device)
    committer = GroupCommitter(store.readings.insert_batch)
    bad = dataclasses.replace(reading(device, 9), signature=b"short")
    good, broken = await asyncio.gather(
        committer.submit([reading(device, 1)]),
        committer.submit([bad]),
        return_exceptions=True,
    )
    assert isinstance(good, list)
    assert good[0].outcome is Outcome.STORED
    assert isinstance(broken, ValueError)


async def test_size_bound_and_window() -> None:
    groups: list[int] = []

    async def insert(rows: Sequence[NewReading]) -> list[InsertResult]:
        groups.append(len(rows))
        await asyncio.sleep(0)
        return [InsertResult(Outcome.STORED, i) for i in range(len(rows))]

    committer = GroupCommitter(insert, max_rows=3, window_s=0.05)
    rows = [reading(address(1), s) for s in range(1, 8)]
    await asyncio.gather(*(committer.submit([r]) for r in rows))
    assert groups == [3, 3, 1]  # never past the bound; the window gathered the rest


async def test_a_store_failure_reaches_every_request_of_the_group() -> None:
    async def insert(rows: Sequence[NewReading]) -> list[InsertResult]:
        await asyncio.sleep(0.01)
        raise StoreUnavailableError("sqlite:///x", "disk I/O error")

    committer = GroupCommitter(insert)
    outcomes = await asyncio.gather(
        *(committer.submit([reading(address(1), s)]) for s in range(1, 4)),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    with pytest.raises(StoreUnavailableError):  # and the next request is tried afresh
        await committer.submit([reading(address(1), 9)])
