"""The bridge's message handling without a broker: a fake ingest stands in for the pipeline and a
fake client records what would be published, so every branch is checked fast."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from chainsense.api.limits import device_admission
from chainsense.chain.registry import DeviceState
from chainsense.identity import DeviceKey, ReadingVerifier
from chainsense.identity.reading import Reading
from chainsense.limits import Limit, MemoryLimiter
from chainsense.mqtt import BrokerUrl, MqttBridge
from chainsense.store.records import InsertResult, Outcome
from chainsense.telemetry.ingest import IngestPipeline, IngestResult
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")

ADDRESS = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
TOPIC = f"chainsense/v1/devices/{ADDRESS}/readings"


class FakeIngest:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[Any]] = []
        self.origins: list[list[int]] = []
        self.fail = fail
        self.next_id = 1

    async def __call__(self, items: Sequence[Any], origins: Sequence[int]) -> list[IngestResult]:
        self.calls.append(list(items))
        self.origins.append(list(origins))
        await asyncio.sleep(0.01)  # the commit
        if self.fail:
            raise OSError("database is gone")
        out = []
        for i, item in enumerate(items):
            out.append(IngestResult(i, "stored", self.next_id, item["device"], item["seq"]))
            self.next_id += 1
        return out


class FakeClient:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any, dict[str, Any]]] = []

    def publish(self, topic: str, payload: str, qos: int = 0, **props: Any) -> None:
        assert qos == 1
        self.published.append((topic, json.loads(payload), props))


def _bridge(ingest: FakeIngest) -> MqttBridge:
    return MqttBridge(
        ingest=ingest, url=BrokerUrl.parse("mqtt://127.0.0.1:1"), client_id="t", max_batch=3
    )


def _reading(device: str = ADDRESS, seq: int = 1) -> dict[str, Any]:
    return {"device": device, "seq": seq}


async def _run(bridge: MqttBridge, coro: Any) -> Any:
    grouper = asyncio.create_task(bridge._grouper.run())
    try:
        return await coro
    finally:
        grouper.cancel()


async def test_concurrent_messages_share_one_commit_and_keep_their_own_indexes() -> None:
    ingest = FakeIngest()
    bridge = _bridge(ingest)

    async def messages() -> list[Any]:
        first = asyncio.create_task(bridge.handle(TOPIC, json.dumps(_reading()).encode()))
        await asyncio.sleep(0.005)  # the first commit runs; the next three wait, then go together
        rest = [bridge.handle(TOPIC, json.dumps(_reading(seq=s)).encode()) for s in (2, 3)]
        rest.append(bridge.handle(TOPIC, json.dumps({"readings": [_reading(seq=4)]}).encode()))
        return [await first, *await asyncio.gather(*rest)]

    receipts = await asyncio.wait_for(_run(bridge, messages()), 10)
    assert [len(c) for c in ingest.calls] == [1, 3]  # at most max_batch readings per commit
    assert ingest.origins == [[0], [0, 1, 2]]  # which message each reading came in
    assert [(r.status, r.body["seq"]) for r in receipts[:3]] == [(201, 1), (201, 2), (201, 3)]
    assert receipts[3].status == 200
    assert receipts[3].body["results"][0]["index"] == 0
    assert receipts[3].body["results"][0]["seq"] == 4


@pytest.mark.parametrize(
    ("topic", "payload", "status", "code", "reason"),
    [
        (f"chainsense/v1/devices/{ADDRESS.upper()}/readings", b"{}", 422, "invalid-topic", 0x90),
        (TOPIC, b"{nope", 400, "malformed-json", 0x99),
        (TOPIC, b"[1]", 422, "invalid-body", 0x99),
        (TOPIC, json.dumps({"readings": [_reading()] * 4}).encode(), 413, "batch-too-large", 0x97),
        (TOPIC, b" " * 5000, 413, "body-too-large", 0x97),
        (TOPIC, json.dumps(_reading(OTHER)).encode(), 403, "topic-mismatch", 0x87),
    ],
)
async def test_whole_message_refusals(
    topic: str, payload: bytes, status: int, code: str, reason: int
) -> None:
    ingest = FakeIngest()
    bridge = _bridge(ingest)
    bridge.max_body_bytes = 4096
    receipt = await asyncio.wait_for(_run(bridge, bridge.handle(topic, payload)), 10)
    assert (receipt.status, receipt.body["type"], receipt.reason_code) == (
        status,
        f"/problems/{code}",
        reason,
    )
    assert ingest.calls == []


async def test_a_foreign_reading_in_a_batch_is_refused_alone() -> None:
    ingest = FakeIngest()
    bridge = _bridge(ingest)
    body = {"readings": [_reading(OTHER), _reading(seq=1), _reading(OTHER.upper()[2:], 2)]}
    receipt = await _run(bridge, bridge.handle(TOPIC, json.dumps(body).encode()))
    assert receipt.reason_code == 0
    assert [r["status"] for r in receipt.body["results"]] == ["rejected", "stored", "stored"]
    assert [r["index"] for r in receipt.body["results"]] == [0, 1, 2]
    # an ill-formed device string is left to the pipeline, which names the field like HTTP
    assert ingest.calls == [[_reading(seq=1), _reading(OTHER.upper()[2:], 2)]]


async def test_receipts_go_to_an_allowed_response_topic_with_the_correlation_data() -> None:
    bridge = _bridge(FakeIngest())
    client = FakeClient()
    mine = f"chainsense/v1/devices/{ADDRESS}/receipts/abc"
    theirs = f"chainsense/v1/devices/{OTHER}/receipts"
    payload = json.dumps(_reading()).encode()

    async def both() -> tuple[int, int]:
        a = await bridge._on_message(
            client, TOPIC, payload, 1, {"response_topic": [mine], "correlation_data": [b"c1"]}
        )
        b = await bridge._on_message(client, TOPIC, payload, 1, {"response_topic": [theirs]})
        return a, b

    assert await _run(bridge, both()) == (0, 0)
    (t1, body1, p1), (t2, _, p2) = client.published
    assert (t1, p1["correlation_data"], p1["user_property"]) == (mine, b"c1", [("status", "201")])
    assert body1["status"] == "stored"
    assert t2 == f"chainsense/v1/devices/{ADDRESS}/receipts"
    assert "correlation_data" not in p2


async def test_a_failed_commit_answers_503_and_stores_nothing() -> None:
    bridge = _bridge(FakeIngest(fail=True))
    client = FakeClient()
    reason = await _run(
        bridge, bridge._on_message(client, TOPIC, json.dumps(_reading()).encode(), 1, {})
    )
    assert reason == 0x80
    assert client.published[0][1]["type"] == "/problems/ingest-unavailable"
    assert client.published[0][2]["user_property"] == [("status", "503")]


# --- the per-device rate limit, counted per message --------------------------------------------

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


class EveryKeyIsActive:
    def get(self, key: str) -> DeviceState:
        return DeviceState(key, key, key, "0x" + "00" * 32, "active", datetime.now(UTC))


class StoreEverything:
    """The commit path: every row stored, with a new id."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    async def submit(self, rows: Sequence[Any]) -> list[InsertResult]:
        await asyncio.sleep(0.01)
        self.rows.extend(rows)
        return [
            InsertResult(Outcome.STORED, len(self.rows) - len(rows) + i + 1)
            for i in range(len(rows))
        ]


def _signed(key: DeviceKey, seq: int) -> dict[str, Any]:
    reading = Reading(key.address, seq, int(time.time() * 1000), COLD.id, (415, 620))
    return reading.to_json() | {"signature": "0x" + key.sign(reading, CHAIN_ID, REGISTRY).hex()}


async def test_the_device_rate_limit_counts_every_message_of_a_grouped_commit() -> None:
    """Messages that arrive together share one ingest call; the device's limit must still count
    each of them, as HTTP counts each request (before, a group counted once per device, so a
    device publishing fast got through far more than its limit), and a message refused whole
    by the limit gets the PUBACK reason 0x97 and a ``retry-after`` user property."""
    committer = StoreEverything()
    pipeline = IngestPipeline(
        store=None,  # type: ignore[arg-type]
        verifier=ReadingVerifier(CHAIN_ID, REGISTRY),
        registry=EveryKeyIsActive(),  # type: ignore[arg-type]
        schemas=BUILTIN_SCHEMAS,
        committer=committer,  # type: ignore[arg-type]
    )
    pipeline.admit = device_admission(MemoryLimiter(), Limit("device", rate=0.001, burst=3))
    bridge = MqttBridge(
        ingest=lambda items, origins: pipeline.ingest(items, transport="mqtt", origins=origins),
        url=BrokerUrl.parse("mqtt://127.0.0.1:1"),
        client_id="t",
    )
    key = DeviceKey.generate()
    topic = f"chainsense/v1/devices/{key.address.lower()}/readings"
    client = FakeClient()

    async def messages() -> list[int]:
        first = asyncio.create_task(
            bridge._on_message(client, topic, json.dumps(_signed(key, 1)).encode(), 1, {})
        )
        await asyncio.sleep(0.002)  # the first commit runs; the other seven wait, then go together
        rest = [
            bridge._on_message(client, topic, json.dumps(_signed(key, s)).encode(), 1, {})
            for s in range(2, 9)
        ]
        return [await first, *await asyncio.gather(*rest)]

    reasons = await asyncio.wait_for(_run(bridge, messages()), 10)
    assert len(committer.rows) == 3, "the burst of 3 messages, not 3 groups"
    statuses = [props["user_property"][0] for _, _, props in client.published]
    assert statuses.count(("status", "201")) == 3
    assert statuses.count(("status", "429")) == 5
    assert reasons.count(0x97) == 5
    assert reasons.count(0) == 3
    refused = [(body, props) for _, body, props in client.published if body.get("status") == 429]
    assert all(body["type"] == "/problems/rate-limited" for body, _ in refused)
    assert all(("retry-after", "1000") in props["user_property"] for _, props in refused)
    # one ingest call without origins is one request: every reading of it counts once
    pipeline.admit = device_admission(MemoryLimiter(), Limit("device", rate=0.001, burst=3))
    results = await pipeline.ingest([_signed(key, s) for s in range(9, 14)], transport="mqtt")
    assert [r.status for r in results] == ["stored"] * 5
