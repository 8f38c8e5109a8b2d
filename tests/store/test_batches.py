"""The batch repository: sealing is atomic and exclusive, states move as the anchorer says."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from chainsense.store import BatchState, Store, StoreError

from ._support import address, reading, register

CONTRACT = address(99)
T = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def root(n: int) -> bytes:
    return hashlib.sha256(b"root%d" % n).digest()


async def stored(store: Store, n: int) -> list[int]:
    await register(store, address(1))
    results = await store.readings.insert_batch([reading(address(1), s) for s in range(1, n + 1)])
    return [r.reading_id for r in results if r.reading_id is not None]


async def test_unbatched_lists_the_oldest_readings_first(store: Store) -> None:
    ids = await stored(store, 5)
    pending = await store.batches.unbatched(limit=3)
    assert [p.id for p in pending] == ids[:3]
    assert pending[0].struct_hash == reading(address(1), 1).struct_hash


async def test_seal_assigns_readings_and_records_the_root(store: Store) -> None:
    ids = await stored(store, 5)
    batch = await store.batches.seal(
        ids[:3], root=root(1), chain_id=31337, contract=CONTRACT, sealed_at=T
    )
    assert (batch.state, batch.reading_count, batch.root) == (BatchState.SEALED, 3, root(1))
    assert batch.tx_hash is None
    assert batch.attempts == 0
    assert [p.id for p in await store.batches.unbatched(limit=10)] == ids[3:]
    assert [i for i, _ in await store.batches.struct_hashes(batch.id)] == ids[:3]
    first = await store.readings.get(ids[0])
    assert first is not None
    assert first.batch_id == batch.id


async def test_seal_refuses_readings_already_sealed_and_changes_nothing(store: Store) -> None:
    ids = await stored(store, 4)
    await store.batches.seal(ids[:2], root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    with pytest.raises(StoreError, match="1 of 2 readings are already sealed or missing"):
        await store.batches.seal(ids[1:3], root=root(2), chain_id=1, contract=CONTRACT, sealed_at=T)
    assert [p.id for p in await store.batches.unbatched(limit=10)] == ids[2:]
    assert len(await store.batches.find()) == 1


async def test_seal_refuses_missing_readings_and_empty_batches(store: Store) -> None:
    with pytest.raises(StoreError, match="already sealed or missing"):
        await store.batches.seal([12345], root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    with pytest.raises(ValueError, match="at least one reading"):
        await store.batches.seal([], root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    assert await store.batches.find() == []


async def test_anchor_unanchor_and_failures(store: Store) -> None:
    ids = await stored(store, 2)
    batch = await store.batches.seal(ids, root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    await store.batches.record_failure(batch.id, "rpc down")
    await store.batches.record_failure(batch.id, "rpc still down")
    again = await store.batches.get(batch.id)
    assert again is not None
    assert (again.attempts, again.last_error) == (2, "rpc still down")
    await store.batches.mark_anchored(
        batch.id,
        chain_id=31337,
        contract=CONTRACT,
        tx_hash=b"\x01" * 32,
        block_number=7,
        block_hash=b"\x02" * 32,
        block_time=1_763_700_005,
        anchored_at=T + timedelta(seconds=3),
    )
    anchored = await store.batches.get(batch.id)
    assert anchored is not None
    assert anchored.state is BatchState.ANCHORED
    assert (anchored.block_number, anchored.block_time, anchored.last_error) == (
        7,
        1_763_700_005,
        None,
    )
    assert anchored.anchored_at == T + timedelta(seconds=3)
    assert [b.id for b in await store.batches.find(state=BatchState.ANCHORED, min_block=7)] == [
        batch.id
    ]
    assert await store.batches.find(state=BatchState.ANCHORED, min_block=8) == []
    await store.batches.unanchor(batch.id, reason="reorg")
    back = await store.batches.get(batch.id)
    assert back is not None
    assert back.state is BatchState.SEALED
    assert (back.tx_hash, back.block_number, back.last_error) == (None, None, "reorg")
    with pytest.raises(StoreError, match="no batch 999"):
        await store.batches.unanchor(999, reason="x")


async def test_backlog_counts_unbatched_and_sealed_readings(store: Store) -> None:
    empty = await store.batches.backlog()
    assert (empty.unbatched_readings, empty.sealed_batches, empty.oldest_unanchored_at) == (
        0,
        0,
        None,
    )
    ids = await stored(store, 5)
    await store.batches.seal(ids[:2], root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    backlog = await store.batches.backlog()
    assert (backlog.unbatched_readings, backlog.sealed_batches, backlog.sealed_readings) == (
        3,
        1,
        2,
    )
    first = await store.readings.get(ids[0])
    assert first is not None
    assert backlog.oldest_unanchored_at == first.received_at


async def test_duplicate_root_is_refused(store: Store) -> None:
    ids = await stored(store, 2)
    await store.batches.seal(ids[:1], root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    with pytest.raises(StoreError):
        await store.batches.seal(ids[1:], root=root(1), chain_id=1, contract=CONTRACT, sealed_at=T)
    assert [p.id for p in await store.batches.unbatched(limit=10)] == ids[1:]
