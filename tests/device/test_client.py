"""DeviceClient and Uplink against a stand-in platform (httpx.MockTransport): value conversion,
the domain cache, batching in seq order, retries with backoff, and how each answer settles a
reading. The same behaviour against the real server is in test_e2e.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chainsense.device import (
    DeviceClient,
    Domain,
    OfflineBuffer,
    PlatformUnreachableError,
    Uplink,
)
from chainsense.identity import DeviceKey, Reading, ReadingVerifier
from chainsense.telemetry.schemas import UnknownSchemaError, ValueScaleError

DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
COLD = "chainsense.coldchain.v1"
BASE = "http://platform.test"


@dataclass
class FakePlatform:
    """Enough of POST /v1/readings and GET /v1/chain to exercise the client: verifies the
    signature, stores by (device, seq), answers identical replays as duplicates."""

    domain: Domain = DOMAIN
    registered: set[str] = field(default_factory=set)
    stored: dict[int, dict[str, Any]] = field(default_factory=dict)
    batches: list[list[int]] = field(default_factory=list)
    outages: int = 0
    """Answer this many next requests with 503."""
    down: bool = False
    override: Callable[[httpx.Request], httpx.Response | None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.outages:
            self.outages -= 1
            return httpx.Response(503, json={"title": "Service unavailable", "status": 503})
        if self.override is not None and (answer := self.override(request)) is not None:
            return answer
        if request.method == "GET" and request.url.path == "/v1/chain":
            contracts = {"DeviceRegistry": {"address": self.domain.verifying_contract}}
            return httpx.Response(
                200, json={"chain_id": self.domain.chain_id, "contracts": contracts}
            )
        if request.method == "POST" and request.url.path == "/v1/readings":
            items = json.loads(request.content)["readings"]
            self.batches.append([item["seq"] for item in items])
            results = [self._one(i, item) for i, item in enumerate(items)]
            return httpx.Response(200, json={"results": results})
        return httpx.Response(404, json={"title": "Not Found", "status": 404})

    def _one(self, index: int, item: dict[str, Any]) -> dict[str, Any]:
        base = {"index": index, "device": item["device"], "seq": item["seq"]}
        verifier = ReadingVerifier(self.domain.chain_id, self.domain.verifying_contract)
        if not verifier.verify(Reading.from_json(item), bytes.fromhex(item["signature"][2:])):
            return base | _refused(401, "Signature does not match the device")
        if item["device"] not in self.registered:
            return base | _refused(403, "Unknown device")
        seq = item["seq"]
        if seq in self.stored:
            if self.stored[seq] == item:
                return base | {"status": "duplicate", "id": seq}
            return base | _refused(409, "Sequence number already used")
        if self.stored and seq < max(self.stored):
            return base | _refused(409, "Sequence number not increasing")
        self.stored[seq] = item
        return base | {"status": "stored", "id": seq}


def _refused(status: int, title: str) -> dict[str, Any]:
    return {
        "status": "rejected",
        "error": {"type": "about:blank", "title": title, "status": status, "detail": title.lower()},
    }


@dataclass
class Rig:
    platform: FakePlatform
    key: DeviceKey
    buffer: OfflineBuffer
    http: httpx.AsyncClient
    clock: list[int]

    def client(self, **kwargs: Any) -> DeviceClient:
        options: dict[str, Any] = {"http": self.http, "backoff": 0.0, "retries": 2}
        return DeviceClient(
            BASE, self.key, self.buffer, clock=lambda: self.clock[0], **(options | kwargs)
        )


@pytest_asyncio.fixture(loop_scope="session")
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    key = DeviceKey.generate()
    platform = FakePlatform(registered={key.address})
    async with httpx.AsyncClient(transport=httpx.MockTransport(platform)) as http:
        with OfflineBuffer(tmp_path / "buffer.sqlite") as buffer:
            yield Rig(platform, key, buffer, http, [1_763_700_000_000])


VALUES: dict[str, Decimal | str | int] = {"temperature": Decimal("4.15"), "humidity": "62"}


async def test_record_signs_in_schema_order_with_device_time(rig: Rig) -> None:
    device = rig.client()
    reading = await device.record(COLD, {"humidity": "62.5", "temperature": -18})
    assert reading.seq == 1
    assert reading.timestamp == rig.clock[0]
    assert reading.values == (-1800, 625)
    (entry,) = rig.buffer.pending()
    assert entry.reading == reading
    verifier = ReadingVerifier(DOMAIN.chain_id, DOMAIN.verifying_contract)
    assert verifier.verify(reading, entry.signature)
    assert rig.buffer.domain == DOMAIN  # taken from GET /v1/chain, then cached


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temperature": "4.15"}, "humidity: missing"),
        ({**VALUES, "pressure": "1"}, "pressure: not a metric of chainsense.coldchain.v1"),
        ({**VALUES, "temperature": "4.155"}, "temperature: 4.155 has more decimals"),
        ({**VALUES, "humidity": 62.5}, "humidity: .*float"),
        ({**VALUES, "humidity": "sixty"}, 'humidity: "sixty" is not a number'),
        ({**VALUES, "humidity": True}, "humidity: expected a decimal number, got bool"),
    ],
)
async def test_bad_values_name_the_metric_and_use_no_seq(
    rig: Rig, values: dict[str, Any], message: str
) -> None:
    device = rig.client()
    with pytest.raises(ValueScaleError, match=message):
        await device.record(COLD, values)
    with pytest.raises(UnknownSchemaError):
        await device.record("chainsense.nothing.v1", VALUES)
    assert rig.buffer.next_seq == 1


async def test_offline_before_first_contact_nothing_is_recorded(rig: Rig) -> None:
    rig.platform.down = True
    with pytest.raises(PlatformUnreachableError, match="ConnectError"):
        await rig.client().record(COLD, VALUES)
    assert rig.buffer.next_seq == 1


async def test_offline_after_first_contact_readings_wait_in_order(rig: Rig) -> None:
    device = rig.client()
    await device.send(COLD, VALUES)
    rig.platform.down = True
    for i in range(4):
        rig.clock[0] += 1000
        reading, report = await device.send(COLD, {**VALUES, "humidity": i})
        assert report.unreachable
        assert report.pending == i + 1
        assert reading.seq == i + 2
    rig.platform.down = False
    report = await device.flush()
    assert (report.stored, report.duplicates, report.pending, report.error) == (4, 0, 0, None)
    assert report.complete
    assert list(rig.platform.stored) == [1, 2, 3, 4, 5]
    assert [item["timestamp"] for item in rig.platform.stored.values()] == [
        1_763_700_000_000 + 1000 * i for i in range(5)
    ]


async def test_batches_go_in_seq_order(rig: Rig) -> None:
    device = rig.client(batch_size=3, domain=DOMAIN)  # configured: no first contact needed
    rig.platform.down = True
    for _ in range(7):
        await device.send(COLD, VALUES)
    rig.platform.down = False
    report = await device.flush()
    assert report.stored == 7
    assert rig.platform.batches == [[1, 2, 3], [4, 5, 6], [7]]


async def test_5xx_is_retried_with_bounded_attempts(rig: Rig) -> None:
    device = rig.client(retries=2)
    await device.record(COLD, VALUES)  # first contact: the domain is cached
    rig.platform.outages = 2  # the third attempt gets through
    report = await device.flush()
    assert report.stored == 1
    await device.record(COLD, VALUES)
    rig.platform.outages = 3  # one more than the attempts
    report = await device.flush()
    assert report.unreachable
    assert report.pending == 1
    assert "503 Service unavailable" in (report.error or "")
    assert (await device.flush()).stored == 1


async def test_a_crash_before_the_buffer_delete_gets_duplicate(rig: Rig) -> None:
    device = rig.client()
    await device.record(COLD, VALUES)
    (entry,) = rig.buffer.pending()
    assert (await device.flush()).stored == 1
    _restore(rig.buffer, entry)  # as if the process died after the commit, before the delete
    report = await device.flush()
    assert (report.stored, report.duplicates, report.pending) == (0, 1, 0)
    assert len(rig.platform.stored) == 1


async def test_refused_readings_move_aside_and_do_not_block(rig: Rig) -> None:
    rig.platform.registered.clear()
    device = rig.client()
    _, report = await device.send(COLD, VALUES)
    (rejected,) = report.rejected
    assert rejected.seq == 1
    assert rejected.status == 403
    assert report.pending == 0
    rig.platform.registered.add(rig.key.address)
    _, report = await device.send(COLD, VALUES)
    assert report.stored == 1
    assert list(rig.platform.stored) == [2]
    assert [r.seq for r in rig.buffer.rejected()] == [1]
    assert rig.buffer.rejected()[0].problem["title"] == "Unknown device"


async def test_a_transient_refusal_of_one_reading_stays_pending(rig: Rig) -> None:
    device = rig.client()
    await device.record(COLD, VALUES)
    await device.record(COLD, VALUES)

    def busy(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != "/v1/readings":
            return None
        items = json.loads(request.content)["readings"]
        results = [
            {"index": i, "seq": it["seq"], **_refused(503, "Busy")} for i, it in enumerate(items)
        ]
        return httpx.Response(200, json={"results": results})

    rig.platform.override = busy
    report = await device.flush()
    assert (report.pending, report.rejected, report.error) == (2, (), None)
    rig.platform.override = None
    assert (await device.flush()).stored == 2


async def test_a_too_large_batch_is_split(rig: Rig) -> None:
    device = rig.client(batch_size=8, domain=DOMAIN)
    rig.platform.down = True
    for _ in range(8):
        await device.send(COLD, VALUES)
    rig.platform.down = False

    def small_batches(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/readings" and len(json.loads(request.content)["readings"]) > 3:
            return httpx.Response(413, json={"title": "Batch too large", "status": 413})
        return None

    rig.platform.override = small_batches
    report = await device.flush()
    assert report.stored == 8
    assert rig.platform.batches == [[1, 2], [3, 4], [5, 6], [7, 8]]


async def test_request_level_errors_keep_the_readings(rig: Rig, tmp_path: Path) -> None:
    await rig.client().record(COLD, VALUES)  # domain cached
    uplink = Uplink(BASE + "/wrong-root", rig.buffer, http=rig.http, backoff=0)
    report = await uplink.flush()
    assert report.error is not None
    assert "404" in report.error
    assert not report.unreachable
    assert report.pending == 1
    assert rig.buffer.rejected_count() == 0

    def garbled(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/readings":
            return httpx.Response(200, json={"results": []})
        return None

    rig.platform.override = garbled
    report = await rig.client().flush()
    assert "unexpected batch answer" in (report.error or "")
    assert report.pending == 1


async def test_readings_signed_for_another_domain_are_not_sent(rig: Rig) -> None:
    device = rig.client(domain=Domain(1, DOMAIN.verifying_contract))
    await device.record(COLD, VALUES)
    report = await device.flush()
    assert "another EIP-712 domain" in (report.error or "")
    assert report.pending == 1
    assert rig.platform.batches == []


async def test_a_buffer_of_another_device_is_refused(rig: Rig) -> None:
    await rig.client().record(COLD, VALUES)
    from chainsense.device import OfflineBufferError

    with pytest.raises(OfflineBufferError, match="belongs to device"):
        DeviceClient(BASE, DeviceKey.generate(), rig.buffer, http=rig.http)


def _restore(buffer: OfflineBuffer, entry: Any) -> None:
    """Put a delivered reading back, byte for byte, as a crash before the delete leaves it."""
    import sqlite3

    reading: Reading = entry.reading
    db = sqlite3.connect(buffer.path, isolation_level=None)
    try:
        db.execute(
            'INSERT INTO pending (seq, timestamp, schema, "values", signature, chain_id, '
            "contract, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                reading.seq,
                reading.timestamp,
                "0x" + reading.schema.hex(),
                json.dumps(list(reading.values)),
                "0x" + entry.signature.hex(),
                entry.domain.chain_id,
                entry.domain.verifying_contract,
                entry.recorded_at,
            ),
        )
    finally:
        db.close()
