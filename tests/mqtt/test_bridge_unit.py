"""The bridge's message handling without a broker: a fake ingest stands in for the pipeline and a
fake client records what would be published, so every branch is checked fast."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from chainsense.mqtt import BrokerUrl, MqttBridge
from chainsense.telemetry.ingest import IngestResult

ADDRESS = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
TOPIC = f"chainsense/v1/devices/{ADDRESS}/readings"


class FakeIngest:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[Any]] = []
        self.fail = fail
        self.next_id = 1

    async def __call__(self, items: Sequence[Any]) -> list[IngestResult]:
        self.calls.append(list(items))
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
