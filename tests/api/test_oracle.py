"""The cold-chain oracle's compliance result computed from the stored readings, on a fresh
platform (Anvil, SQLite, anchorer): which readings count, the cited evidence root, and the
delivery report that uses them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from chainsense.cli import app
from chainsense.identity import DeviceKey

from .conftest import Api, cli_through, make_api
from .test_proofs import _wait_for_proof
from .test_settlement import CARRIER, DEV, SHIPPER, _ok, _post_readings, _problem, _warp

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A chain of its own: the shipment windows are in device time, near the chain's clock."""
    yield from make_api(tmp_path_factory.mktemp("oracle-api"))


def _open_shipment(api: Api, loggers: list[str], start_ms: int, end_ms: int) -> int:
    terms = {
        "account": SHIPPER, "carrier": DEV[CARRIER], "loggers": loggers, "min_value": 200,
        "max_value": 800, "window_start_ms": start_ms, "window_end_ms": end_ms,
        "payment": 500_000_000, "penalty_per_breach": 50_000_000, "max_penalty": 200_000_000,
    }  # fmt: skip
    opened = _ok(api.client.post("/v1/shipments", json=terms, headers=api.auth("operator")), 201)
    return int(opened["id"])


def test_the_oracle_computes_compliance_from_the_stored_readings(api: Api) -> None:
    op, reader = api.auth("operator"), api.auth("reader")
    a, b, stranger = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    for key in (a, b, stranger):
        api.register(key)
    now_ms = int(time.time() * 1000)
    shipment = _open_shipment(api, [a.address, b.address], now_ms - 60_000, now_ms + 60_000)
    empty = _open_shipment(api, [stranger.address], now_ms + 50_000, now_ms + 60_000)
    ids = _post_readings(
        api,
        [
            api.sign(a, 1, (1_500, 600), timestamp=now_ms - 120_000),  # before the window
            api.sign(a, 2, (450, 600), timestamp=now_ms - 30_000),
            api.sign(a, 3, (850, 600), timestamp=now_ms - 20_000),  # 8.50 Cel: breach
            api.sign(b, 1, (150, 600), timestamp=now_ms - 10_000),  # 1.50 Cel: breach
            api.sign(b, 2, (800, 600), timestamp=now_ms),  # on the limit: in range
            api.sign(stranger, 1, (2_000, 600), timestamp=now_ms),  # not a logger
        ],
    )
    root = _wait_for_proof(api, ids[2])["root"]
    found = _ok(api.client.get(f"/v1/shipments/{shipment}/compliance", headers=reader))
    assert found == {
        "shipment": shipment, "compliant": False, "readings": 4, "breaches": 2,
        "breach_reading_ids": [ids[2], ids[3]], "evidence_reading_id": ids[2],
        "evidence_root": root,
    }  # fmt: skip
    assert _problem(api.client.get("/v1/shipments/999999/compliance", headers=reader), 404)
    half = api.client.post(f"/v1/shipments/{shipment}/delivery", json={"breaches": 1}, headers=op)
    assert _problem(half, 422)

    _warp(api, 120)  # past both windows
    reported = _ok(api.client.post(f"/v1/shipments/{shipment}/delivery", headers=op))
    assert reported["compliance"]["breach_reading_ids"] == [ids[2], ids[3]]
    state = reported["shipment"]
    assert (state["status"], state["reported_breaches"], state["evidence_root"]) == (
        "delivered", 2, root,
    )  # fmt: skip
    assert state["penalty"] == 100_000_000
    nothing = _problem(api.client.post(f"/v1/shipments/{empty}/delivery", headers=op), 409)
    assert "no readings" in nothing["detail"]


def test_cli_reports_the_computed_result(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """`shipment compliance` and `shipment report` take the result from the platform's API, with
    no data dir and no database."""
    logger = DeviceKey.generate()
    api.register(logger)
    now_ms = int(time.time() * 1000)
    shipment = _open_shipment(api, [logger.address], now_ms - 60_000, now_ms + 200_000)
    ids = _post_readings(
        api,
        [
            api.sign(logger, 1, (500, 600), timestamp=now_ms - 1_000),
            api.sign(logger, 2, (900, 600), timestamp=now_ms),  # 9.00 Cel: breach
        ],
    )
    root = _wait_for_proof(api, ids[1])["root"]
    env = cli_through(api, monkeypatch)
    shown = CliRunner().invoke(app, ["shipment", "compliance", str(shipment), "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == _ok(
        api.client.get(f"/v1/shipments/{shipment}/compliance", headers=api.auth("reader"))
    )
    text = CliRunner().invoke(app, ["shipment", "compliance", str(shipment)], env=env)
    assert f"NOT compliant, 2 readings in the window, 1 out of range [{ids[1]}]" in text.stdout
    half = CliRunner().invoke(
        app, ["shipment", "report", str(shipment), "--breaches", "1"], env=env
    )
    assert half.exit_code == 2, half.output
    _warp(api, 400)
    result = CliRunner().invoke(app, ["shipment", "report", str(shipment)], env=env)
    assert result.exit_code == 0, result.output
    assert f"2 readings in the window, 1 out of range [{ids[1]}]" in result.output
    assert f"root {root}" in result.output
    state = _ok(api.client.get(f"/v1/shipments/{shipment}", headers=api.auth("reader")))
    assert (state["status"], state["reported_breaches"], state["evidence_root"]) == (
        "delivered", 1, root,
    )  # fmt: skip
