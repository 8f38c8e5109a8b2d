"""A request's checks run on the event loop, a slice at a time: the same results, index for index,
as checking it whole; the loop answers others between slices; no worker thread (a thread that
releases the GIL for every signature waits behind the loop to get it back: docs/performance.md)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from chainsense.chain.registry import DeviceState
from chainsense.identity import DeviceKey, Reading, ReadingVerifier
from chainsense.store import InsertResult, NewReading, Outcome
from chainsense.telemetry.committer import GroupCommitter
from chainsense.telemetry.ingest import IngestPipeline
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

CHAIN_ID = 31337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # a fresh dev chain's DeviceRegistry
NOW_MS = 1_763_700_000_000
COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
KEYS = [DeviceKey(hashlib.sha256(f"slices-{i}".encode()).digest()) for i in range(5)]


class Registered:
    """Every key of ``KEYS`` is registered and active."""

    def get(self, key: str) -> DeviceState | None:
        if key not in {k.address for k in KEYS}:
            return None
        return DeviceState(key, key, key, "0x" + "00" * 32, "active", datetime.now(UTC))


def _items(count: int) -> list[Any]:
    """``count`` signed readings; every 37th carries another reading's signature and every
    53rd is not an object, so refusals fall in every slice."""
    items: list[Any] = []
    for i in range(count):
        key = KEYS[i % len(KEYS)]
        reading = Reading(key.address, i + 1, NOW_MS - 1000 * (count - i), COLD.id, (415, 620))
        signature = key.sign(reading, CHAIN_ID, CONTRACT)
        items.append(reading.to_json() | {"signature": "0x" + signature.hex()})
    for i in range(36, count, 37):
        items[i] = items[i] | {"signature": items[i - 1]["signature"]}
    for i in range(52, count, 53):
        items[i] = [items[i]]
    return items


async def _stored(rows: Sequence[NewReading]) -> list[InsertResult]:
    return [InsertResult(Outcome.STORED, row.seq) for row in rows]


def _pipeline() -> IngestPipeline:
    return IngestPipeline(
        store=None,  # type: ignore[arg-type]  # the committer below is the only writer
        verifier=ReadingVerifier(CHAIN_ID, CONTRACT),
        registry=Registered(),  # type: ignore[arg-type]
        schemas=BUILTIN_SCHEMAS,
        clock=lambda: NOW_MS / 1000,
        committer=GroupCommitter(_stored),
    )


async def test_a_large_request_is_checked_on_the_loop_slice_by_slice() -> None:
    items = _items(1000)
    pipeline = _pipeline()
    whole, _, _ = pipeline._check_all(items, NOW_MS)  # the reference: one pass, no slices
    threads: set[int] = set()
    ticks: list[int] = []
    seen: list[int] = []  # ticks seen at each slice
    check_all = pipeline._check_all

    def recording(part: Sequence[Any], now_ms: int, *, start: int = 0) -> Any:
        threads.add(threading.get_ident())
        seen.append(len(ticks))
        return check_all(part, now_ms, **({"start": start} if start else {}))

    pipeline._check_all = recording  # type: ignore[method-assign]
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(1)
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        results = await pipeline.ingest(items)
    finally:
        stop.set()
        await task
    assert threads == {threading.get_ident()}  # the loop's own thread
    assert len(seen) == 10  # ten slices of 100
    assert all(b > a for a, b in pairwise(seen))  # others ran in between
    assert [r.index for r in results] == list(range(1000))
    refused = [r.index for r in results if r.status == "rejected"]
    assert refused == [r.index for r in whole if r is not None]
    assert {r.error.code for r in results if r.error is not None} == {
        "signature-mismatch",
        "invalid-reading",
    }
    assert all(r.reading_id == r.seq for r in results if r.status == "stored")
    assert [r.seq for r in results if r.status == "stored"] == [
        i + 1 for i in range(1000) if i not in refused
    ]


async def test_a_small_request_is_checked_in_one_pass() -> None:
    pipeline = _pipeline()
    calls: list[int] = []
    check_all = pipeline._check_all

    def recording(part: Sequence[Any], now_ms: int, *, start: int = 0) -> Any:
        calls.append(len(part))
        return check_all(part, now_ms, **({"start": start} if start else {}))

    pipeline._check_all = recording  # type: ignore[method-assign]
    results = await pipeline.ingest(_items(100))
    assert calls == [100]
    assert [r.status for r in results].count("rejected") == 3  # indices 36, 52, 73
