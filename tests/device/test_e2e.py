"""The device side against the real server: register, send, lose the platform, keep recording,
get it back, flush; every reading arrives exactly once, in seq order, with the device time of
when it was taken. Also: a crash between the platform's commit and the buffer's delete gets
``duplicate``; a refused reading moves aside and does not block later ones."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from chainsense.cli.device import device_app
from chainsense.device import DeviceClient, OfflineBuffer
from chainsense.identity import DeviceKey
from tests.device.conftest import LiveServer

pytestmark = pytest.mark.chain

COLD = "chainsense.coldchain.v1"
PASSPHRASE = "correct horse battery staple"


def _readings(server: LiveServer, device: str, key: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.url}/v1/readings",
        params={"device": device, "limit": 1000},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _active_alarms(server: LiveServer, device: str, key: str, *, wait: bool = True) -> list[int]:
    """The device's active alarm ids; with ``wait``, once the AI worker has opened one."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(
            f"{server.url}/v1/alarms",
            params={"device": device, "state": "active"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        ids = [int(a["id"]) for a in response.json()["items"]]
        if ids or not wait:
            return ids
        assert time.monotonic() < deadline, "no alarm opened"
        time.sleep(0.2)


def _register(server: LiveServer, address: str, key: str) -> None:
    response = httpx.post(
        f"{server.url}/v1/devices",
        json={"address": address},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert response.status_code == 201, response.text


def test_cli_session_survives_a_platform_outage(server: LiveServer, tmp_path: Path) -> None:
    runner = CliRunner()
    operator = server.api_key("operator")
    reader = server.api_key("reader")
    env = {
        "CHAINSENSE_DEVICE_PASSPHRASE": PASSPHRASE,
        "CHAINSENSE_API_KEY": operator,
        "CHAINSENSE_API_URL": server.url,
        "CHAINSENSE_DEVICE_KEYSTORE": str(tmp_path / "truck-7.json"),
    }

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(device_app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output

    values = ["--value", "temperature=4.15", "--value", "humidity=62"]
    created = run("new")
    address = created.split("device address:")[1].split()[0]
    assert (tmp_path / "truck-7.json").exists()
    assert f"registered {address}" in run("register")
    sent = run("send", "--schema", COLD, *values, "--count", "2", "--interval", "0")
    assert sent.count("delivered: 1 stored") == 2
    listed = run("list")
    assert address in listed
    assert "active" in listed

    server.stop()
    offline = run(
        "send",
        "--schema",
        COLD,
        "--value",
        "temperature=-18.5",
        "--value",
        "humidity=40.1",
        "--count",
        "3",
        "--interval",
        "0.05",
    )
    assert "is unreachable: ConnectError" in offline
    assert "; 3 readings buffered in" in offline
    assert "unreachable" in run("flush", code=3)
    status = run("status")
    assert "next seq:  6" in status
    assert "pending:   3 (oldest: seq 3" in status
    with OfflineBuffer(tmp_path / "truck-7.json.buffer.sqlite") as buffer:
        recorded = {e.seq: e.reading.timestamp for e in buffer.pending()}

    server.start()
    assert "delivered: 3 stored, 0 already there" in run("flush")
    assert "pending:   0" in run("status")
    assert "nothing to flush" in run("flush")

    rows = _readings(server, address, reader)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["values"] for r in rows] == [[415, 620]] * 2 + [[-1850, 401]] * 3
    assert {r["seq"]: r["timestamp"] for r in rows[2:]} == recorded
    assert all(r["device"] == address for r in rows)

    # -18.5 Cel is below the cold-chain range: a critical alarm; after service the operator
    # re-commissions the logger, which clears it
    open_ids = _active_alarms(server, address, reader)
    assert f"re-commissioned {address}; alarms cleared: {open_ids[0]}" in run(
        "recommission", address
    )
    assert _active_alarms(server, address, reader, wait=False) == []
    again = json.loads(run("recommission", address[2:].lower(), "--json"))  # no 0x, any case
    assert (again["device"], again["alarms_cleared"]) == (address, [])
    assert "not a device address" in run("recommission", "0x1234", code=2)
    # a refusal names the request: the API path is not a secret (only the base URL is redacted)
    stranger = DeviceKey.generate().address
    refused = run("revoke", stranger, code=1)
    assert f"POST /v1/devices/{stranger}/revoke" in refused, refused
    assert "***" not in refused
    assert f"revoked {address}" in run("revoke", address)
    refused = run("send", "--schema", COLD, *values, code=1)
    assert "seq 6 rejected: 403" in refused
    assert "rejected:  1" in run("status")
    assert len(_readings(server, address, reader)) == 5


def test_cli_errors_are_one_line_with_exit_codes(server: LiveServer, tmp_path: Path) -> None:
    runner = CliRunner()
    keystore = tmp_path / "k.json"
    DeviceKey.generate().save(keystore, PASSPHRASE, kdf="pbkdf2", work_factor=1000)
    base = ["--keystore", str(keystore), "--api", server.url]
    env = {"CHAINSENSE_DEVICE_PASSPHRASE": PASSPHRASE}

    def run(args: list[str], code: int, extra: dict[str, str] | None = None) -> str:
        result = runner.invoke(device_app, args, env=env | (extra or {}))
        assert result.exit_code == code, result.output
        return result.output

    send = ["send", *base, "--schema", COLD, "--value", "temperature=4.15"]
    assert "humidity: missing" in run(send, 2)
    assert "temperature: 4.155 has more decimals" in run(
        [*send[:-1], "temperature=4.155", "--value", "humidity=1"], 2
    )
    assert "NAME=NUMBER" in run([*send, "--value", "humidity"], 2)
    assert "unknown schema" in run(["send", *base, "--schema", "x.v1", "--value", "a=1"], 2)
    assert "wrong passphrase" in run(
        [*send, "--value", "humidity=1"], 2, {"CHAINSENSE_DEVICE_PASSPHRASE": "nope"}
    )
    assert "CHAINSENSE_API_KEY" in run(["register", *base], 2, {"CHAINSENSE_API_KEY": ""})
    assert "401" in run(["list", "--api", server.url], 2, {"CHAINSENSE_API_KEY": "cs_bad"})
    unreachable = ["--keystore", str(tmp_path / "fresh.json"), "--api", "http://127.0.0.1:9"]
    DeviceKey.generate().save(tmp_path / "fresh.json", PASSPHRASE, kdf="pbkdf2", work_factor=1000)
    # a device that never reached the platform cannot sign (no domain): nothing is buffered
    out = run(
        [
            "send",
            *unreachable,
            "--schema",
            COLD,
            "--value",
            "temperature=1",
            "--value",
            "humidity=1",
        ],
        3,
    )
    assert "unreachable" in out
    assert "no buffer" not in run(["status", *unreachable[:2]], 0)
    assert "pending:   0" in run(["status", *unreachable[:2]], 0)


async def test_a_crash_before_the_buffer_delete_resends_as_duplicate(
    server: LiveServer, tmp_path: Path
) -> None:
    operator = server.api_key("operator")
    key = DeviceKey.generate()
    _register(server, key.address, operator)
    with OfflineBuffer(tmp_path / "b.sqlite") as buffer:
        async with DeviceClient(server.url, key, buffer, backoff=0.01) as device:
            await device.record(COLD, {"temperature": "2.5", "humidity": "55"})
            (entry,) = buffer.pending()
            report = await device.flush()
            assert report.stored == 1
            # the process "died" after the platform's commit and before the buffer's delete
            db = sqlite3.connect(buffer.path, isolation_level=None)
            r = entry.reading
            db.execute(
                'INSERT INTO pending (seq, timestamp, schema, "values", signature, chain_id, '
                "contract, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.seq,
                    r.timestamp,
                    "0x" + r.schema.hex(),
                    json.dumps(list(r.values)),
                    "0x" + entry.signature.hex(),
                    entry.domain.chain_id,
                    entry.domain.verifying_contract,
                    entry.recorded_at,
                ),
            )
            db.close()
            report = await device.flush()
    assert (report.stored, report.duplicates, report.pending, report.rejected) == (0, 1, 0, ())
    rows = _readings(server, key.address, operator)
    assert [row["seq"] for row in rows] == [1]


async def test_a_refused_reading_moves_aside_and_later_ones_arrive(
    server: LiveServer, tmp_path: Path
) -> None:
    operator = server.api_key("operator")
    key = DeviceKey.generate()
    values = {"temperature": "-20", "humidity": "30"}
    with OfflineBuffer(tmp_path / "b.sqlite") as buffer:
        async with DeviceClient(server.url, key, buffer, batch_size=2) as device:
            _, first = await device.send(COLD, values)  # not registered yet
            _, second = await device.send(COLD, values)
            (refused,) = first.rejected
            assert refused.status == 403
            assert refused.problem["title"] == "Unknown device"
            assert second.rejected[0].seq == 2
            _register(server, key.address, operator)
            for _ in range(3):
                await device.record(COLD, values)
            report = await device.flush()
        assert (report.stored, report.pending, report.rejected) == (3, 0, ())
        assert [r.seq for r in buffer.rejected()] == [2, 1]
    rows = _readings(server, key.address, operator)
    assert [row["seq"] for row in rows] == [3, 4, 5]
