"""A new user sends a signed stream with an injected fault through the real HTTP server and sees
the anomaly through /v1/anomalies, the live /v1/stream (SSE) and `chainsense anomalies`; the
worker's models and cursor survive a restart."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from chainsense.cli import app
from chainsense.identity import DeviceKey, Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.device.conftest import LiveServer

pytestmark = [pytest.mark.chain, pytest.mark.slow]

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("ai-e2e"))
    server.start()
    try:
        yield server
    finally:
        if server._server is not None:
            server.stop()


def _signed(live: LiveServer, key: DeviceKey, seq: int, ts: int, temp: int) -> dict[str, Any]:
    reading = Reading(device=key.address, seq=seq, timestamp=ts, schema=COLD.id, values=(temp, 620))
    deployment = live.platform.chain.deployment
    signature = key.sign(reading, deployment.chain_id, deployment.address("DeviceRegistry"))
    return reading.to_json() | {"signature": "0x" + signature.hex()}


def _wait(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_an_injected_fault_reaches_the_api_the_live_stream_and_the_cli(live: LiveServer) -> None:
    operator = live.api_key("operator")
    reader = live.api_key("reader")
    auth = {"Authorization": f"Bearer {reader}"}
    key = DeviceKey.generate()
    created = httpx.post(
        live.url + "/v1/devices",
        json={"address": key.address},
        headers={"Authorization": f"Bearer {operator}"},
        timeout=120,
    )
    assert created.status_code == 201, created.text

    received: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(5.0, read=60.0)) as http,
            http.stream(
                "GET", live.url + "/v1/stream", params={"device": key.address}, headers=auth
            ) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = "anomaly"
            for line in response.iter_lines():
                connected.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "alarm":
                    alarms.append(json.loads(line[6:]))
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    received.append(event)
                if alarms and received and received[-1]["value"] == 12.5:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(30)

    now = int(time.time() * 1000)
    start = now - 100_000
    readings = [_signed(live, key, i + 1, start + i * 1000, 415 + i % 3) for i in range(80)]
    posted = httpx.post(live.url + "/v1/readings", json={"readings": readings}, timeout=60)
    assert posted.status_code in (200, 201), posted.text
    fault = httpx.post(
        live.url + "/v1/readings", json=_signed(live, key, 81, start + 81_000, 1250), timeout=60
    )
    assert fault.status_code == 201, fault.text
    fault_id = fault.json()["id"]

    def found() -> list[dict[str, Any]]:
        page = httpx.get(
            live.url + "/v1/anomalies", params={"device": key.address}, headers=auth
        ).json()
        return [e for e in page["items"] if e["reading_id"] == fault_id]

    (event,) = _wait(found)
    assert event["metric"] == "temperature"
    assert event["value"] == 12.5
    assert event["low"] < 4.15 < event["high"] < 12.5
    assert event["score"] >= 1.0
    assert (
        event["explanation"] == "temperature = 12.5 Cel, outside the hard limit 2 to 8 Cel (limit)"
    )
    assert event["proof"] == f"/v1/readings/{fault_id}/proof"
    assert event["schema_name"] == "chainsense.coldchain.v1"
    # no false alarm on the 80 normal readings before it
    everything = httpx.get(
        live.url + "/v1/anomalies", params={"device": key.address}, headers=auth
    ).json()["items"]
    assert [e["reading_id"] for e in everything] == [fault_id]

    listener.join(30)
    assert [e["reading_id"] for e in received] == [fault_id]
    # the alarm that groups it went out on the same stream
    assert alarms[0]["reading_id"] == fault_id
    assert (alarms[0]["check"], alarms[0]["state"]) == ("limit", "active")

    result = CliRunner().invoke(
        app,
        ["anomalies", "--device", key.address, "--api", live.url],
        env={"CHAINSENSE_API_KEY": reader},
    )
    assert result.exit_code == 0, result.output
    assert "temperature = 12.5 Cel" in result.output
    assert f"reading {fault_id}" in result.output

    status = httpx.get(live.url + "/v1/ai/status", headers=auth).json()
    assert status["cursor"] >= fault_id
    assert status["lag_readings"] == 0
    assert status["streams"] >= 1

    # a restart resumes from the saved cursor and models: no new learning period
    live.stop()
    live.start()
    status = httpx.get(live.url + "/v1/ai/status", headers=auth).json()
    assert status["cursor"] >= fault_id
    assert status["streams"] >= 1
    # the open event closes after 12 normal readings; a detector that had to learn again would
    # stay silent for its warm-up (24 readings) and miss the next fault
    normal = [_signed(live, key, s, start + s * 1000, 415 + s % 3) for s in range(82, 95)]
    assert httpx.post(live.url + "/v1/readings", json={"readings": normal}, timeout=60).is_success
    again = _signed(live, key, 95, start + 95_000, 1300)
    assert httpx.post(live.url + "/v1/readings", json=again, timeout=60).status_code == 201

    def second() -> list[dict[str, Any]]:
        page = httpx.get(
            live.url + "/v1/anomalies", params={"device": key.address}, headers=auth
        ).json()
        return [e for e in page["items"] if e["value"] == 13.0]

    assert _wait(second)
