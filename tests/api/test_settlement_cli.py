"""`chainsense shipment|market|charging` against a running platform, reached through its API only
(no data dir, no database: see ``cli_through``) and its chain: a breach proven from a reading
id, a charging session closed from the charger's reading, a market deposit and order, the read
commands with --json, and the refusals (exit 1 for a contract's refusal, 2 for usage, 3 for an
unreachable platform, 4 for a pending proof)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Protocol

import pytest
from eth_account import Account
from typer.testing import CliRunner

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.cli import app
from chainsense.identity import DeviceKey
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

from .conftest import Api, cli_through, make_api
from .test_proofs import _wait_for_proof
from .test_settlement import _ok, _post_readings, _warp

pytestmark = pytest.mark.chain

CHARGER = BUILTIN_SCHEMAS.by_name("chainsense.charger.v1")
DEV = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("settlement-cli"))


class Cli(Protocol):
    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str: ...


@pytest.fixture
def cli(api: Api, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``chainsense ARGS`` reaching the platform through its API only; asserts the exit code."""
    base = cli_through(api, monkeypatch)

    def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
        result = CliRunner().invoke(app, list(args), env={**base, **(env or {})})
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_charging_open_close_and_refusals(api: Api, cli: Cli) -> None:
    charger = DeviceKey.generate()
    response = api.client.post(
        "/v1/devices",
        json={"address": charger.address, "owner": DEV[7]},
        headers=api.auth("operator"),
    )
    assert response.status_code == 201, response.text
    priced = json.loads(
        cli("charging", "price", charger.address, "250", "--account", "7", "--json")
    )
    assert (priced["charger"], priced["price_per_wh"]) == (charger.address, 250)
    assert re.fullmatch(r"0x[0-9a-f]{64}", priced["tx_hash"])
    assert priced["gas_used"] > 21_000
    out = cli(
        "charging", "open", "--charger", charger.address, "--deposit", "15000000",
        "--account", "8",
    )  # fmt: skip
    match = re.search(r"session (\d+) opened: tx 0x[0-9a-f]{64}", out)
    assert match, out
    session = match.group(1)
    opened_at = api.client.get(
        f"/v1/charging/sessions/{session}", headers=api.auth("reader")
    ).json()["opened_at"]
    (reading,) = _post_readings(
        api, [api.sign(charger, 1, (36_000,), timestamp=(opened_at + 1) * 1000, schema=CHARGER.id)]
    )
    _wait_for_proof(api, reading)
    refused = cli("charging", "close", session, "--reading", str(reading), code=1)
    assert "ChargingPaymentsNotStation" in refused
    out = cli("charging", "close", session, "--reading", str(reading), "--account", "7")
    assert "36000 Wh, 9000000 due" in out
    assert "ChargingPayments" in cli("charging", "refund", session, code=1)
    shown = json.loads(cli("charging", "status", session, "--json"))
    assert shown == _ok(
        api.client.get(f"/v1/charging/sessions/{session}", headers=api.auth("reader"))
    )
    assert (shown["status"], shown["energy_wh"]) == ("closed", 36_000)
    assert f"session {session}: closed, vehicle {DEV[8]}" in cli("charging", "list")
    page = json.loads(cli("charging", "list", "--limit", "1", "--json"))
    assert [x["id"] for x in page["items"]] == [int(session)]
    # dev accounts are for the dev chain only; an unknown reading is an error
    rpc = f"http://127.0.0.1:{api.platform.settings.anvil_port}"
    off = cli("market", "--rpc", rpc, "deposit", "5", "--account", "4", code=2)
    assert "dev chain only" in off
    assert "no reading" in cli("shipment", "claim", "1", "--reading", "99999999", code=1)


def test_shipment_breach_claimed_by_reading_id_then_settled(api: Api, cli: Cli) -> None:
    logger = DeviceKey.generate()
    api.register(logger)
    now = int(time.time() * 1000)
    out = cli(
        "shipment", "open", "--carrier", DEV[6], "--logger", logger.address, "--min", "200",
        "--max", "800", "--start-ms", str(now - 60_000), "--end-ms", str(now + 60_000),
        "--payment", "500000000", "--penalty", "50000000", "--max-penalty", "200000000",
        "--account", "5",
    )  # fmt: skip
    match = re.search(r"shipment (\d+) opened", out)
    assert match, out
    shipment = match.group(1)
    (breach,) = _post_readings(api, [api.sign(logger, 1, (1150, 600), timestamp=now)])
    root = _wait_for_proof(api, breach)["root"]
    _warp(api, 120)
    reported = json.loads(
        cli("shipment", "report", shipment, "--breaches", "0", "--root", root, "--json")
    )
    assert (reported["shipment"], reported["breaches"], reported["evidence_root"]) == (
        int(shipment),
        0,
        root,
    )
    assert reported["tx_hash"].startswith("0x")
    out = cli("shipment", "claim", shipment, "--reading", str(breach))
    assert f"breach proven with reading {breach}: tx 0x" in out
    assert "AlreadyClaimed" in cli("shipment", "claim", shipment, "--reading", str(breach), code=1)
    assert "proven 1, penalty 50000000" in cli("shipment", "status", shipment)
    assert "ChallengeOpen" in cli("shipment", "settle", shipment, code=1)
    _warp(api, 3_601)
    settled = json.loads(cli("shipment", "settle", shipment, "--json"))
    assert set(settled) == {"shipment", "tx_hash", "gas_used"}
    assert settled["shipment"] == int(shipment)
    assert "settled" in cli("shipment", "status", shipment)
    state = json.loads(cli("shipment", "status", shipment, "--json"))
    assert (state["status"], state["proven_breaches"]) == ("settled", 1)
    listed = json.loads(cli("shipment", "list", "--json"))
    assert listed == _ok(api.client.get("/v1/shipments", headers=api.auth("reader")))
    assert listed["items"][0]["id"] == int(shipment)
    assert f"shipment {shipment}: settled, shipper {DEV[5]}" in cli("shipment", "list")
    cli("shipment", "withdraw", "--account", "6")
    assert "NothingToWithdraw" in cli("shipment", "withdraw", "--account", "6", code=1)


def test_market_deposit_and_order(api: Api, cli: Cli) -> None:
    cli("market", "deposit", "1000000", "--account", "4")
    interval = api.client.get("/v1/market", headers=api.auth("reader")).json()["next_open_interval"]
    out = cli(
        "market", "order", "bid", "--interval", str(interval + 1), "--quantity", "1000",
        "--price", "100", "--account", "4",
    )  # fmt: skip
    assert re.search(r"bid \d+ placed: tx 0x", out), out
    placed = json.loads(cli(
        "market", "order", "bid", "--interval", str(interval + 1), "--quantity", "500",
        "--price", "90", "--account", "4", "--json",
    ))  # fmt: skip
    assert (placed["side"], type(placed["order"])) == ("bid", int)
    assert placed["tx_hash"].startswith("0x")
    assert "NotStarted" in cli("market", "clear", str(interval + 1), code=1)
    orders = json.loads(cli("market", "orders", "--json"))
    assert orders == _ok(api.client.get("/v1/market/orders", headers=api.auth("reader")))
    newest = orders["items"][0]
    assert (newest["id"], newest["side"], newest["participant"], newest["quantity_wh"]) == (
        placed["order"],
        "bid",
        DEV[4],
        500,
    )
    assert f"bid {newest['id']} by {DEV[4]}: 500 Wh at 90/Wh; interval" in cli("market", "orders")
    state = json.loads(cli("market", "interval", str(interval + 1), "--json"))
    assert state == newest["interval_state"]
    assert "not cleared" in cli("market", "interval", str(interval + 1))
    cli("market", "order", "ask", "--interval", "1", "--quantity", "1", "--price", "1",
         "--account", "4", code=2)  # fmt: skip


@pytest.fixture(scope="module")
def unanchored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A platform that stores readings but anchors none: every proof stays pending."""
    yield from make_api(tmp_path_factory.mktemp("settlement-cli-pending"), anchoring=False)


def test_a_pending_proof_exits_4(unanchored: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = unanchored
    env = cli_through(api, monkeypatch)
    logger = DeviceKey.generate()
    api.register(logger)
    now = int(time.time() * 1000)
    terms = {
        "account": 5, "carrier": DEV[6], "loggers": [logger.address], "min_value": 200,
        "max_value": 800, "window_start_ms": now - 60_000, "window_end_ms": now + 60_000,
        "payment": 500_000_000, "penalty_per_breach": 50_000_000, "max_penalty": 200_000_000,
    }  # fmt: skip
    shipment = str(
        _ok(api.client.post("/v1/shipments", json=terms, headers=api.auth("operator")), 201)["id"]
    )
    (reading,) = _post_readings(api, [api.sign(logger, 1, (1150, 600), timestamp=now)])
    runner = CliRunner()
    for args in (
        ["shipment", "claim", shipment, "--reading", str(reading)],
        ["shipment", "compliance", shipment],
        ["shipment", "report", shipment],
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 4, result.output
        assert result.stderr.startswith("pending: "), result.stderr
        assert "retry in about" in result.stderr
    assert json.loads(runner.invoke(app, ["shipment", "status", shipment, "--json"], env=env)
                      .stdout)["reported_breaches"] == 0  # fmt: skip
