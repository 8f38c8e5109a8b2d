"""/v1/alarms through the real AI worker: a cold-chain breach opens one critical alarm, its return
clears it; reader lists and reads, operator acknowledges and clears (idempotent), 404 for an
unknown alarm; an operator's clear of a continuing condition is followed by a new alarm."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from chainsense.cli import app
from chainsense.identity import DeviceKey
from tests.api.conftest import Api, cli_through

pytestmark = pytest.mark.chain

T0 = 1_767_225_600_000


def _send(api: Api, key: DeviceKey, first_seq: int, temps: list[int]) -> None:
    body = {
        "readings": [
            api.sign(key, first_seq + i, (t, 620), timestamp=T0 + (first_seq + i) * 1000)
            for i, t in enumerate(temps)
        ]
    }
    response = api.client.post("/v1/readings", json=body)
    assert response.status_code == 200, response.text
    assert all(r["status"] in ("stored", "duplicate") for r in response.json()["results"])


def _alarms(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.client.get("/v1/alarms", params=params, headers=api.auth("reader"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _wait(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_an_excursion_opens_one_alarm_its_return_clears_it(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    device = key.address
    _send(api, key, 1, [415 + i % 3 for i in range(60)] + [900, 905, 910])
    [alarm] = _wait(lambda: _alarms(api, device=device, state="active"))
    assert alarm["check"] == "limit"
    assert alarm["severity"] == "critical"
    assert alarm["metrics"] == ["temperature"]
    assert alarm["schema_name"] == "chainsense.coldchain.v1"
    assert alarm["acknowledged"] is False
    assert alarm["message"].startswith("temperature = 9")
    assert (alarm["expected_low"], alarm["expected_high"]) == ("2.00", "8.00")
    _wait(lambda: _alarms(api, device=device, state="active")[0]["count"] == 3)
    _send(api, key, 64, [415] * 15)
    [cleared] = _wait(lambda: _alarms(api, device=device, state="cleared"))
    assert cleared["id"] == alarm["id"]
    assert cleared["count"] == 3
    assert cleared["cleared_at_ms"] is not None
    assert _alarms(api, device=device, state="active") == []

    path = f"/v1/alarms/{alarm['id']}"
    assert api.client.get(path, headers=api.auth("reader")).json()["id"] == alarm["id"]
    assert api.client.post(path + "/ack", headers=api.auth("reader")).status_code == 403
    acked = api.client.post(path + "/ack", headers=api.auth("operator"))
    assert acked.status_code == 200
    assert acked.json()["acknowledged"] is True
    again = api.client.post(path + "/ack", headers=api.auth("operator"))
    assert again.json()["acknowledged_at_ms"] == acked.json()["acknowledged_at_ms"]
    assert _alarms(api, device=device, acknowledged="true")[0]["id"] == alarm["id"]
    assert _alarms(api, device=device, acknowledged="false") == []
    # clearing a cleared alarm is idempotent: 200 and the alarm unchanged
    twice = api.client.post(path + "/clear", headers=api.auth("operator"))
    assert twice.status_code == 200
    assert twice.json()["cleared_at_ms"] == cleared["cleared_at_ms"]
    for verb in ("", "/ack", "/clear"):
        method = api.client.get if not verb else api.client.post
        missing = method(f"/v1/alarms/999999999{verb}", headers=api.auth("operator"))
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


def test_operator_clear_of_a_continuing_condition_then_a_new_alarm(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    device = key.address
    _send(api, key, 1, [415 + i % 3 for i in range(60)] + [120, 130])
    [alarm] = _wait(lambda: _alarms(api, device=device, state="active"))
    cleared = api.client.post(f"/v1/alarms/{alarm['id']}/clear", headers=api.auth("operator"))
    assert cleared.json()["state"] == "cleared"
    _send(api, key, 63, [125])  # still below 2 Cel
    [new] = _wait(lambda: _alarms(api, device=device, state="active"))
    assert new["id"] > alarm["id"]
    page = api.client.get(
        "/v1/alarms", params={"device": device, "limit": 1}, headers=api.auth("reader")
    ).json()
    assert [a["id"] for a in page["items"]] == [new["id"]]  # newest first
    rest = api.client.get(
        "/v1/alarms",
        params={"device": device, "limit": 1, "cursor": page["next_cursor"]},
        headers=api.auth("reader"),
    ).json()
    assert [a["id"] for a in rest["items"]] == [alarm["id"]]
    assert rest["next_cursor"] is None


def test_cli_lists_acknowledges_and_clears_through_the_api(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`chainsense alarms` with no data dir and no database: the API only."""
    key = DeviceKey.generate()
    api.register(key)
    device = key.address
    _send(api, key, 1, [415 + i % 3 for i in range(60)] + [900, 905])
    [alarm] = _wait(lambda: _alarms(api, device=device, state="active"))
    runner = CliRunner()
    reader = cli_through(api, monkeypatch, "reader")
    operator = {**reader, "CHAINSENSE_API_KEY": api.keys["operator"]}

    listed = runner.invoke(app, ["alarms", "--device", device, "--json"], env=reader)
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [alarm["id"]]
    text = runner.invoke(app, ["alarms", "--device", device, "--state", "active"], env=reader)
    assert text.stdout.startswith(f"#{alarm['id']} active unacked critical ")
    refused = runner.invoke(app, ["alarms", "ack", str(alarm["id"])], env=reader)
    assert refused.exit_code == 2  # a reader key may not: set a key with that scope
    assert "CHAINSENSE_API_KEY" in refused.stderr
    acked = runner.invoke(app, ["alarms", "ack", str(alarm["id"]), "--json"], env=operator)
    assert acked.exit_code == 0, acked.output
    assert json.loads(acked.stdout)["acknowledged"] is True
    cleared = runner.invoke(app, ["alarms", "clear", str(alarm["id"])], env=operator)
    assert cleared.exit_code == 0, cleared.output
    assert cleared.stdout.startswith(f"#{alarm['id']} cleared acked ")
    missing = runner.invoke(app, ["alarms", "clear", "999999999"], env=operator)
    assert missing.exit_code == 1
    assert "999999999" in missing.stderr
    bad = runner.invoke(app, ["alarms", "--state", "open"], env=reader)
    assert bad.exit_code == 2
    no_key = {k: v for k, v in reader.items() if k != "CHAINSENSE_API_KEY"}
    monkeypatch.delenv("CHAINSENSE_API_KEY", raising=False)
    assert runner.invoke(app, ["alarms"], env=no_key).exit_code == 2
