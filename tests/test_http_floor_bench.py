"""bench/http_floor.py: the same load client against uvicorn serving apps that do nothing but
the HTTP exchange (``echo``) or the signature checks (``check``), the floor the platform's
ratios are compared with in docs/performance.md."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chainsense.identity import DeviceKey, Reading

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _floor_app  # noqa: E402
from http_floor import DOMAIN  # noqa: E402


def _post(app: Any, body: bytes) -> tuple[int, bytes]:
    """One request to a raw ASGI app; (status, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": "/v1/readings"}, receive, send))
    return sent[0]["status"], sent[1]["body"]


def _signed(key: DeviceKey, seq: int) -> dict[str, Any]:
    reading = Reading(device=key.address, seq=seq, timestamp=1_700_000_000_000 + seq,
                      schema=bytes(32), values=(seq, 2))  # fmt: skip
    signature = key.sign(reading, DOMAIN.chain_id, DOMAIN.registry)
    return reading.to_json() | {"signature": "0x" + signature.hex()}


def test_the_check_app_recovers_every_signer_and_refuses_a_forgery() -> None:
    key = DeviceKey.generate()
    good = _signed(key, 1)
    assert _post(_floor_app.check, json.dumps(good).encode())[0] == 201
    forged = good | {"values": [good["values"][0] + 1, 2]}  # signed over other values
    assert _post(_floor_app.check, json.dumps(forged).encode())[0] == 403
    status, body = _post(_floor_app.check, json.dumps({"readings": [good, forged]}).encode())
    answer = json.loads(body)
    assert (status, answer["stored"]) == (200, 1)
    assert [r["status"] for r in answer["results"]] == ["stored", "refused"]


@pytest.mark.slow
def test_the_floor_bench_runs_against_real_uvicorn_processes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "http_floor.py"), "--devices", "20",
         "--duration", "1", "--per-device", "40", "--workers", "1,2", "--batches", "10"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for row in ("echo single x20, 1 worker(s)", "check single x20, 2 worker(s)",
                "check batch 10 x8, 2 worker(s)"):  # fmt: skip
        assert row in done.stdout, done.stdout
    assert "FAILED" not in done.stdout
