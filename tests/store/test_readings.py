"""Readings: exact round trips, outcomes of replays, seq monotonicity under concurrency, queries."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chainsense.store import (
    MAX_QUERY_LIMIT,
    InsertResult,
    NewReading,
    Outcome,
    Store,
    StoredReading,
)
from chainsense.store.records import INT64_MAX, INT64_MIN

from ._support import address, reading, register, seqs_in_id_order
from .conftest import Backend

pytestmark = pytest.mark.timeout(120)

DEVICE = address(1)
OTHER = address(2)


def _same_fields(stored: StoredReading, sent: NewReading) -> None:
    assert (
        stored.device,
        stored.seq,
        stored.timestamp,
        stored.schema,
        stored.values,
        stored.signature,
        stored.struct_hash,
    ) == (
        sent.device,
        sent.seq,
        sent.timestamp,
        sent.schema,
        sent.values,
        sent.signature,
        sent.struct_hash,
    )


async def test_round_trip_keeps_every_signed_field_exactly(store: Store) -> None:
    await register(store, DEVICE)
    sent = [
        replace(reading(DEVICE, 1), values=(INT64_MIN, INT64_MAX, 0, -1, 2**53 + 1, -(2**53) - 1)),
        replace(reading(DEVICE, 2), values=(), timestamp=0),
        NewReading(
            device=DEVICE,
            seq=INT64_MAX,
            timestamp=INT64_MAX,
            schema=bytes(range(32)),
            values=(INT64_MAX,),
            signature=b"\x00" * 32 + b"\xff" * 32 + b"\x1c",
            struct_hash=b"\x00" * 31 + b"\x01",
        ),
    ]
    before = datetime.now(UTC)
    results = await store.readings.insert_batch(sent)
    assert [r.outcome for r in results] == [Outcome.STORED] * 3
    for result, row in zip(results, sent, strict=True):
        assert result.reading_id is not None
        stored = await store.readings.get(result.reading_id)
        assert stored is not None
        _same_fields(stored, row)
        assert type(stored.values) is tuple
        assert all(type(v) is int for v in stored.values)
        assert stored.id == result.reading_id
        assert stored.batch_id is None
        assert stored.received_at.tzinfo == UTC
        assert before - timedelta(seconds=1) <= stored.received_at <= datetime.now(UTC)
    assert await store.readings.get(10**12) is None
    assert await store.readings.count() == 3


async def test_ids_increase_in_input_order(store: Store) -> None:
    await register(store, DEVICE, OTHER)
    rows = [reading(DEVICE if i % 2 else OTHER, i) for i in range(1, 40)]
    results = await store.readings.insert_batch(rows)
    ids = [r.reading_id or 0 for r in results]
    assert all(r.outcome is Outcome.STORED for r in results)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    more = await store.readings.insert_batch([reading(DEVICE, 100)])
    assert more[0].reading_id is not None
    assert more[0].reading_id > max(ids)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 2**63),
        ("seq", -1),
        ("seq", True),
        ("timestamp", 2**63),
        ("timestamp", -1),
        ("values", (2**63,)),
        ("values", (INT64_MIN - 1,)),
        ("values", (1.5,)),
        ("values", (True,)),
        ("schema", b"\x00" * 31),
        ("signature", b"\x00" * 64),
        ("struct_hash", "0x" + "00" * 32),
        ("device", "0x1234"),
        ("device", DEVICE[:-1] + ("a" if DEVICE[-1] == "A" else "A")),  # broken checksum
    ],
)
async def test_malformed_rows_raise_before_anything_is_stored(
    store: Store, field: str, value: object
) -> None:
    await register(store, DEVICE)
    bad = replace(reading(DEVICE, 2), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"rows\[1\]\.{field}"):
        await store.readings.insert_batch([reading(DEVICE, 1), bad])
    assert await store.readings.count() == 0


async def test_duplicate_conflict_stale_and_unknown_device(store: Store) -> None:
    await register(store, DEVICE)
    first = await store.readings.insert_batch([reading(DEVICE, 5), reading(DEVICE, 7)])
    id5, id7 = (r.reading_id for r in first)
    results = await store.readings.insert_batch(
        [
            reading(DEVICE, 5),  # the identical reading again
            reading(DEVICE, 7, variant=1),  # seq 7 taken by another reading
            replace(reading(DEVICE, 5), signature=reading(DEVICE, 5, variant=9).signature),
            replace(reading(DEVICE, 7), struct_hash=bytes(32)),
            reading(DEVICE, 6),  # unused, but not above last_seq (7)
            reading(DEVICE, 0),
            reading(OTHER, 1),  # no such device
        ]
    )
    assert results == [
        InsertResult(Outcome.DUPLICATE, id5),
        InsertResult(Outcome.CONFLICT, id7),
        InsertResult(Outcome.CONFLICT, id5),
        InsertResult(Outcome.CONFLICT, id7),
        InsertResult(Outcome.STALE, None),
        InsertResult(Outcome.STALE, None),
        InsertResult(Outcome.UNKNOWN_DEVICE, None),
    ]
    assert await store.readings.count() == 2
    stored7 = await store.readings.get(id7 or 0)
    assert stored7 is not None
    _same_fields(stored7, reading(DEVICE, 7))  # the conflicting one did not overwrite it


async def test_a_mixed_batch_stores_the_good_rows(store: Store) -> None:
    await register(store, DEVICE, OTHER)
    await store.readings.insert_batch([reading(DEVICE, 10)])
    results = await store.readings.insert_batch(
        [
            reading(DEVICE, 11),
            reading(address(99), 1),
            reading(OTHER, 1),
            reading(DEVICE, 3),
            reading(DEVICE, 10),
            reading(OTHER, 2),
            reading(DEVICE, 12),
        ]
    )
    assert [r.outcome for r in results] == [
        Outcome.STORED,
        Outcome.UNKNOWN_DEVICE,
        Outcome.STORED,
        Outcome.STALE,
        Outcome.DUPLICATE,
        Outcome.STORED,
        Outcome.STORED,
    ]
    assert await seqs_in_id_order(store, DEVICE) == [10, 11, 12]
    assert await seqs_in_id_order(store, OTHER) == [1, 2]
    for result in results:
        if result.outcome is Outcome.STORED:
            assert result.reading_id is not None
            assert await store.readings.get(result.reading_id) is not None


async def test_rows_of_one_device_in_a_batch_must_increase(store: Store) -> None:
    await register(store, DEVICE)
    results = await store.readings.insert_batch(
        [
            reading(DEVICE, 1),
            reading(DEVICE, 3),
            reading(DEVICE, 2),  # below 3, stored just before: STALE
            reading(DEVICE, 3),  # the same as the row two places up: DUPLICATE of it
            reading(DEVICE, 3, variant=1),  # a different reading at seq 3: CONFLICT with it
            reading(DEVICE, 4),
        ]
    )
    stored3 = results[1].reading_id
    assert [(r.outcome, r.reading_id == stored3) for r in results] == [
        (Outcome.STORED, False),
        (Outcome.STORED, True),
        (Outcome.STALE, False),
        (Outcome.DUPLICATE, True),
        (Outcome.CONFLICT, True),
        (Outcome.STORED, False),
    ]
    assert await seqs_in_id_order(store, DEVICE) == [1, 3, 4]


async def test_last_seq_follows_storage_and_never_decreases(store: Store) -> None:
    await register(store, DEVICE)
    await store.readings.insert_batch([reading(DEVICE, s) for s in (1, 2, 9)])
    assert (await _last_seq(store, DEVICE)) == 9
    await store.readings.insert_batch([reading(DEVICE, 4), reading(DEVICE, 9, variant=1)])
    assert (await _last_seq(store, DEVICE)) == 9
    await register(store, DEVICE)  # a registry resync (last_seq=0) must not lower it
    assert (await _last_seq(store, DEVICE)) == 9
    await store.devices.upsert(
        address=DEVICE,
        owner=address(0),
        metadata_hash=b"\x00" * 32,
        status="active",
        registered_at=datetime.now(UTC),
        last_seq=20,
    )
    assert (await _last_seq(store, DEVICE)) == 20
    results = await store.readings.insert_batch([reading(DEVICE, 15), reading(DEVICE, 21)])
    assert [r.outcome for r in results] == [Outcome.STALE, Outcome.STORED]
    assert (await _last_seq(store, DEVICE)) == 21


async def _last_seq(store: Store, device: str) -> int:
    record = await store.devices.get(device)
    assert record is not None
    return record.last_seq


async def _race(stores: list[Store], tasks: int, top: int) -> list[tuple[NewReading, InsertResult]]:
    """``tasks`` writers insert overlapping seq windows of DEVICE, some with other content."""
    rng = random.Random(20251121)

    async def writer(k: int) -> list[tuple[NewReading, InsertResult]]:
        store = stores[k % len(stores)]
        done: list[tuple[NewReading, InsertResult]] = []
        start = 1 + k * 3
        while start <= top:
            size = rng.randint(1, 25)
            batch = [
                reading(DEVICE, s, variant=k % 3) for s in range(start, min(start + size, top))
            ]
            if rng.random() < 0.3:
                batch.reverse()  # out of order inside the batch
            results = await store.readings.insert_batch(batch)
            done.extend(zip(batch, results, strict=True))
            start += size - rng.randint(0, size // 2)
        return done

    chunks = await asyncio.gather(*(writer(k) for k in range(tasks)))
    return [pair for chunk in chunks for pair in chunk]


async def _check_race(store: Store, outcomes: list[tuple[NewReading, InsertResult]]) -> None:
    by_id = {r.id: r for r in await store.readings.query(device=DEVICE, limit=MAX_QUERY_LIMIT)}
    seqs = [by_id[i].seq for i in sorted(by_id)]
    assert seqs == sorted(set(seqs)), "a seq stored twice, or stored after a higher one"
    stored = [(row, res) for row, res in outcomes if res.outcome is Outcome.STORED]
    assert len(stored) == len(seqs) == await store.readings.count()
    for row, res in stored:
        _same_fields(by_id[res.reading_id or 0], row)
    for row, res in outcomes:
        if res.outcome in (Outcome.DUPLICATE, Outcome.CONFLICT):
            got = by_id[res.reading_id or 0]
            assert got.seq == row.seq
            assert (got.signature == row.signature) is (res.outcome is Outcome.DUPLICATE)
    assert await _last_seq(store, DEVICE) == seqs[-1]


async def test_concurrent_batches_on_one_store_keep_seq_monotonic(store: Store) -> None:
    await register(store, DEVICE)
    outcomes = await _race([store], tasks=8, top=300)
    assert {res.outcome for _, res in outcomes} >= {Outcome.STORED, Outcome.STALE}
    await _check_race(store, outcomes)


async def test_concurrent_batches_from_separate_stores_keep_seq_monotonic(
    store: Store, backend: Backend
) -> None:
    await register(store, DEVICE)
    others = [await Store.open(backend.url) for _ in range(3)]
    try:
        outcomes = await _race([store, *others], tasks=12, top=300)
    finally:
        for other in others:
            await other.close()
    await _check_race(store, outcomes)


async def test_query_filters_by_device_and_time(store: Store) -> None:
    await register(store, DEVICE, OTHER)
    rows = [reading(DEVICE if s % 3 else OTHER, s) for s in range(1, 31)]
    await store.readings.insert_batch(rows)
    mine = await store.readings.query(device=DEVICE)
    assert [r.seq for r in mine] == [s for s in range(1, 31) if s % 3]
    lower = await store.readings.query(device=DEVICE.lower())
    assert lower == mine
    since, until = rows[9].timestamp, rows[19].timestamp  # seq 10 (in), seq 20 (out)
    window = await store.readings.query(since_ms=since, until_ms=until)
    assert [r.seq for r in window] == list(range(10, 20))
    both = await store.readings.query(device=OTHER, since_ms=since, until_ms=until)
    assert [r.seq for r in both] == [12, 15, 18]
    assert await store.readings.query(device=address(77)) == []
    assert await store.readings.query(since_ms=rows[-1].timestamp + 1) == []


async def test_query_pages_with_the_after_id_cursor(store: Store) -> None:
    await register(store, DEVICE, OTHER)
    await store.readings.insert_batch([reading(DEVICE, s) for s in range(1, 26)])
    await store.readings.insert_batch([reading(OTHER, s) for s in range(1, 6)])
    everything = await store.readings.query(limit=MAX_QUERY_LIMIT)
    assert len(everything) == 30
    assert [r.id for r in everything] == sorted(r.id for r in everything)
    pages: list[list[StoredReading]] = []
    after = None
    while page := await store.readings.query(after_id=after, limit=7):
        pages.append(page)
        after = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert [r for p in pages for r in p] == everything
    tail = await store.readings.query(device=DEVICE, after_id=everything[20].id, limit=100)
    assert [r.seq for r in tail] == [22, 23, 24, 25]
    for bad in (0, MAX_QUERY_LIMIT + 1):
        with pytest.raises(ValueError, match="limit"):
            await store.readings.query(limit=bad)
    with pytest.raises(ValueError, match="since_ms"):
        await store.readings.query(since_ms=2**63)


async def test_lower_case_device_addresses_are_stored_checksummed(store: Store) -> None:
    await register(store, DEVICE.lower())
    results = await store.readings.insert_batch([reading(DEVICE.lower(), 1)])
    assert results[0].outcome is Outcome.STORED
    stored = await store.readings.get(results[0].reading_id or 0)
    assert stored is not None
    assert stored.device == DEVICE


async def test_an_empty_batch_is_a_no_op(store: Store) -> None:
    assert await store.readings.insert_batch([]) == []
    assert await store.readings.count() == 0


async def test_a_large_batch_with_many_devices(store: Store) -> None:
    devices = [address(100 + i) for i in range(50)]
    await store.devices.upsert_many([])
    await register(store, *devices)
    rows = [reading(devices[i % 50], 1 + i // 50) for i in range(5000)]
    results = await store.readings.insert_batch(rows)
    assert all(r.outcome is Outcome.STORED for r in results)
    again = await store.readings.insert_batch(rows)  # every (device, seq) collides: chunked
    assert [r.reading_id for r in again] == [r.reading_id for r in results]
    assert all(r.outcome is Outcome.DUPLICATE for r in again)
    assert await store.readings.count() == 5000
