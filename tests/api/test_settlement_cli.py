"""`chainsense shipment|market|charging` against a running platform's chain and store: a breach
proven from a reading id, a charging session closed from the charger's reading, a market
deposit and order, and the refusals (exit 1 for a contract's refusal, 2 for usage)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from eth_account import Account
from typer.testing import CliRunner

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.cli import app
from chainsense.identity import DeviceKey
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

from .conftest import Api, make_api
from .test_proofs import _wait_for_proof
from .test_settlement import _post_readings, _warp

pytestmark = pytest.mark.chain

CHARGER = BUILTIN_SCHEMAS.by_name("chainsense.charger.v1")
DEV = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("settlement-cli"))


def _cli(api: Api, *args: str, code: int = 0) -> str:
    settings = api.platform.settings
    env = {
        "CHAINSENSE_DATA_DIR": str(settings.data_dir),
        "CHAINSENSE_ANVIL_PORT": str(settings.anvil_port),
    }
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_charging_open_close_and_refusals(api: Api) -> None:
    charger = DeviceKey.generate()
    response = api.client.post(
        "/v1/devices",
        json={"address": charger.address, "owner": DEV[7]},
        headers=api.auth("operator"),
    )
    assert response.status_code == 201, response.text
    _cli(api, "charging", "price", charger.address, "250", "--account", "7")
    out = _cli(
        api, "charging", "open", "--charger", charger.address, "--deposit", "15000000",
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
    refused = _cli(api, "charging", "close", session, "--reading", str(reading), code=1)
    assert "ChargingPaymentsNotStation" in refused
    out = _cli(api, "charging", "close", session, "--reading", str(reading), "--account", "7")
    assert "36000 Wh, 9000000 due" in out
    assert "ChargingPayments" in _cli(api, "charging", "refund", session, code=1)
    # dev accounts are for the dev chain only; an unknown reading is an error
    rpc = f"http://127.0.0.1:{api.platform.settings.anvil_port}"
    off = _cli(api, "market", "--rpc", rpc, "deposit", "5", "--account", "4", code=2)
    assert "dev chain only" in off
    assert "no reading" in _cli(api, "shipment", "claim", "1", "--reading", "99999999", code=1)


def test_shipment_breach_claimed_by_reading_id_then_settled(api: Api) -> None:
    logger = DeviceKey.generate()
    api.register(logger)
    now = int(time.time() * 1000)
    out = _cli(
        api, "shipment", "open", "--carrier", DEV[6], "--logger", logger.address, "--min", "200",
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
    _cli(api, "shipment", "report", shipment, "--breaches", "0", "--root", root)
    out = _cli(api, "shipment", "claim", shipment, "--reading", str(breach))
    assert f"breach proven with reading {breach}: tx 0x" in out
    assert "AlreadyClaimed" in _cli(
        api, "shipment", "claim", shipment, "--reading", str(breach), code=1
    )
    assert "proven 1, penalty 50000000" in _cli(api, "shipment", "status", shipment)
    assert "ChallengeOpen" in _cli(api, "shipment", "settle", shipment, code=1)
    _warp(api, 3_601)
    _cli(api, "shipment", "settle", shipment)
    assert "settled" in _cli(api, "shipment", "status", shipment)
    state = json.loads(_cli(api, "shipment", "status", shipment, "--json"))
    assert (state["status"], state["proven_breaches"]) == ("settled", 1)
    _cli(api, "shipment", "withdraw", "--account", "6")
    assert "NothingToWithdraw" in _cli(api, "shipment", "withdraw", "--account", "6", code=1)


def test_market_deposit_and_order(api: Api) -> None:
    _cli(api, "market", "deposit", "1000000", "--account", "4")
    interval = api.client.get("/v1/market", headers=api.auth("reader")).json()["next_open_interval"]
    out = _cli(
        api, "market", "order", "bid", "--interval", str(interval + 1), "--quantity", "1000",
        "--price", "100", "--account", "4",
    )  # fmt: skip
    assert re.search(r"bid \d+ placed: tx 0x", out), out
    assert "NotStarted" in _cli(api, "market", "clear", str(interval + 1), code=1)
    _cli(api, "market", "order", "ask", "--interval", "1", "--quantity", "1", "--price", "1",
         "--account", "4", code=2)  # fmt: skip
