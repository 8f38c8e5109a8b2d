"""Settlement through the API on a real platform (Anvil, SQLite, anchorer): a breach proven
on-chain from a stored reading id end to end, a charging session closed from the charger's
anchored reading, an energy interval cleared, and the problem answers of refused actions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.identity import DeviceKey
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

from .conftest import Api, make_api
from .test_proofs import _wait_for_proof

pytestmark = pytest.mark.chain

CHARGER = BUILTIN_SCHEMAS.by_name("chainsense.charger.v1")
DEV = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]
SHIPPER, CARRIER, STATION, VEHICLE = 5, 6, 7, 8


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("settlement-api"))


def _rpc(api: Api, method: str, *params: object) -> Any:
    async def call() -> Any:
        w3 = api.platform.chain.client.w3
        response = await w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]

    return api.client.portal.call(call)  # type: ignore[union-attr]


def _warp(api: Api, seconds: int) -> None:
    _rpc(api, "evm_increaseTime", seconds)
    _rpc(api, "evm_mine")


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def _post_readings(api: Api, readings: list[dict[str, Any]]) -> list[int]:
    body = _ok(api.client.post("/v1/readings", json={"readings": readings}))
    assert all(r["status"] == "stored" for r in body["results"]), body
    return [r["id"] for r in body["results"]]


def test_charging_session_is_closed_from_the_chargers_reading(api: Api) -> None:
    op = api.auth("operator")
    charger = DeviceKey.generate()
    _ok(
        api.client.post(
            "/v1/devices", json={"address": charger.address, "owner": DEV[STATION]}, headers=op
        ),
        201,
    )
    _ok(
        api.client.put(
            f"/v1/charging/chargers/{charger.address}/price",
            json={"account": STATION, "price_per_wh": 250},
            headers=op,
        )
    )
    opened = _ok(
        api.client.post(
            "/v1/charging/sessions",
            json={"account": VEHICLE, "charger": charger.address, "deposit": 15_000_000},
            headers=op,
        ),
        201,
    )
    session = opened["session"]
    assert (session["status"], session["vehicle"], session["price_per_wh"]) == (
        "open", DEV[VEHICLE], 250,
    )  # fmt: skip
    ts = (session["opened_at"] + 1) * 1000  # taken after the session opened
    (reading_id,) = _post_readings(
        api, [api.sign(charger, 1, (36_000,), timestamp=ts, schema=CHARGER.id)]
    )
    _wait_for_proof(api, reading_id)
    not_station = _problem(
        api.client.post(
            f"/v1/charging/sessions/{session['id']}/close",
            json={"reading_id": reading_id, "account": VEHICLE},
            headers=op,
        ),
        403,
    )
    assert not_station["error"] == "ChargingPaymentsNotStation"
    closed = _ok(
        api.client.post(
            f"/v1/charging/sessions/{session['id']}/close",
            json={"reading_id": reading_id, "account": STATION},
            headers=op,
        )
    )["session"]
    assert (closed["status"], closed["energy_wh"], closed["amount_due"]) == (
        "closed", 36_000, 9_000_000,
    )  # fmt: skip
    refund = api.client.post(f"/v1/charging/sessions/{session['id']}/refund", headers=op)
    assert refund.status_code == 409, refund.text
    vehicle = _ok(api.client.get(f"/v1/settlement/balances/{DEV[VEHICLE]}", headers=op))
    assert vehicle["charging_owed"] >= 6_000_000


def test_breach_is_proven_on_chain_from_a_reading_id(api: Api) -> None:
    op = api.auth("operator")
    logger = DeviceKey.generate()
    api.register(logger)
    now_ms = int(time.time() * 1000)
    opened = _ok(
        api.client.post(
            "/v1/shipments",
            json={
                "account": SHIPPER,
                "carrier": DEV[CARRIER],
                "loggers": [logger.address],
                "min_value": 200,
                "max_value": 800,
                "window_start_ms": now_ms - 60_000,
                "window_end_ms": now_ms + 60_000,
                "payment": 500_000_000,
                "penalty_per_breach": 50_000_000,
                "max_penalty": 200_000_000,
            },
            headers=op,
        ),
        201,
    )
    shipment = opened["id"]
    assert opened["shipper"] == DEV[SHIPPER]
    # the shipment's range is now a hard limit of the AI worker on its logger, saved
    assert api.platform.ai is not None
    watched = api.platform.ai.monitor.shipments[logger.address.lower()][shipment]
    assert (watched.min_value, watched.max_value) == (200, 800)
    saved = api.client.portal.call(api.platform.store.anomalies.states)  # type: ignore[union-attr]
    assert (logger.address, f"shipment:{shipment}", "shipment") in saved
    assert opened["tx"]["tx_hash"].startswith("0x")
    ok_id, breach_id = _post_readings(
        api,
        [
            api.sign(logger, 1, (450, 600), timestamp=now_ms),
            api.sign(logger, 2, (1150, 600), timestamp=now_ms + 1_000),  # 11.50 Cel: a breach
        ],
    )
    root = _wait_for_proof(api, breach_id)["root"]
    _wait_for_proof(api, ok_id)
    state = _ok(api.client.get(f"/v1/shipments/{shipment}", headers=api.auth("reader")))
    assert (state["status"], state["payment"], state["carrier"]) == (
        "open", 500_000_000, DEV[CARRIER],
    )  # fmt: skip

    _warp(api, 120)  # past the shipment window
    reported = _ok(
        api.client.post(
            f"/v1/shipments/{shipment}/delivery",
            json={"breaches": 0, "evidence_root": root},
            headers=op,
        )
    )
    assert reported["shipment"]["status"] == "delivered"
    # the oracle said compliant; the reading says otherwise, and anyone can prove it
    in_range = _problem(
        api.client.post(f"/v1/shipments/{shipment}/claims", json={"reading_id": ok_id}, headers=op),
        422,
    )
    assert in_range["error"] == "ColdChainEscrowValueInRange"
    claimed = _ok(
        api.client.post(
            f"/v1/shipments/{shipment}/claims", json={"reading_id": breach_id}, headers=op
        )
    )
    assert claimed["tx"]["gas_used"] > 0
    assert claimed["shipment"]["proven_breaches"] == 1
    assert claimed["shipment"]["penalty"] == 50_000_000
    twice = _problem(
        api.client.post(
            f"/v1/shipments/{shipment}/claims", json={"reading_id": breach_id}, headers=op
        ),
        422,
    )
    assert twice["error"] == "ColdChainEscrowAlreadyClaimed"
    early = _problem(api.client.post(f"/v1/shipments/{shipment}/settle", headers=op), 409)
    assert early["error"].endswith("ChallengeOpen")

    _warp(api, 3_601)
    settled = _ok(api.client.post(f"/v1/shipments/{shipment}/settle", headers=op))
    assert settled["shipment"]["status"] == "settled"
    reader = api.auth("reader")
    carrier = _ok(api.client.get(f"/v1/settlement/balances/{DEV[CARRIER]}", headers=reader))
    assert carrier["escrow_owed"] == 450_000_000
    done = _ok(
        api.client.post(
            "/v1/settlement/withdrawals",
            json={"account": CARRIER, "contract": "escrow"},
            headers=op,
        )
    )
    assert done["balances"]["escrow_owed"] == 0
    assert done["balances"]["wallet"] == carrier["wallet"] + 450_000_000
    again = _problem(
        api.client.post(
            "/v1/settlement/withdrawals",
            json={"account": CARRIER, "contract": "escrow"},
            headers=op,
        ),
        402,
    )
    assert again["error"].endswith("NothingToWithdraw")


def test_market_deposit_orders_and_clearing(api: Api) -> None:
    op, reader = api.auth("operator"), api.auth("reader")
    seller, buyer = 3, 4
    meter = DeviceKey.generate()
    _ok(
        api.client.post(
            "/v1/devices", json={"address": meter.address, "owner": DEV[seller]}, headers=op
        ),
        201,
    )
    market = _ok(api.client.get("/v1/market", headers=reader))
    interval = market["next_open_interval"] + 1
    deposited = _ok(
        api.client.post(
            "/v1/market/deposits", json={"account": buyer, "amount": 1_000_000}, headers=op
        )
    )
    assert deposited["balance"] >= 1_000_000
    order = {"interval": interval, "quantity_wh": 2_000}
    ask = _ok(
        api.client.post(
            "/v1/market/orders",
            json=order
            | {"account": seller, "side": "ask", "meter": meter.address, "price_per_wh": 100},
            headers=op,
        ),
        201,
    )
    _ok(
        api.client.post(
            "/v1/market/orders",
            json=order | {"account": buyer, "side": "bid", "price_per_wh": 150},
            headers=op,
        ),
        201,
    )
    assert ask["participant"] == DEV[seller]
    early = _problem(api.client.post(f"/v1/market/intervals/{interval}/clear", headers=op), 409)
    assert early["error"] == "EnergyMarketNotStarted"
    _rpc(api, "evm_mine", interval * market["interval_seconds"])
    cleared = _ok(api.client.post(f"/v1/market/intervals/{interval}/clear", headers=op))
    assert cleared["interval"] | {"starts_at": 0} == {
        "interval": interval, "starts_at": 0, "cleared": True, "price": 125,
        "sold_wh": 2_000, "delivered_wh": 0,
    }  # fmt: skip
    assert _ok(api.client.get(f"/v1/market/intervals/{interval}", headers=reader))["cleared"]


def test_refusals_are_problems(api: Api) -> None:
    op, reader = api.auth("operator"), api.auth("reader")
    assert _problem(api.client.get("/v1/shipments/999999", headers=reader), 404)
    assert _problem(api.client.get("/v1/charging/sessions/999999", headers=reader), 404)
    # actions need the operator scope; reads need a key
    assert _problem(api.client.post("/v1/shipments/1/settle", headers=reader), 403)
    assert _problem(api.client.get("/v1/shipments/1"), 401)
    # the platform's role accounts are not user wallets
    bad = _problem(
        api.client.post("/v1/market/deposits", json={"account": 1, "amount": 5}, headers=op), 422
    )
    assert bad["errors"][0]["field"] == "account"
    unknown = api.client.post("/v1/shipments/1/claims", json={"reading_id": 10**12}, headers=op)
    assert _problem(unknown, 404)["detail"].startswith("no reading")


def test_user_wallet_routes_are_refused_off_the_dev_chain(api: Api, tmp_path: Path) -> None:
    """A second platform on the same chain, through its RPC URL (not a dev chain it runs)."""
    data = tmp_path / "external"
    (data / "deployments").mkdir(parents=True)
    source = api.platform.settings.deployments_dir
    for record in source.iterdir():
        (data / "deployments" / record.name).write_bytes(record.read_bytes())
    devchain = api.platform.chain.devchain
    assert devchain is not None
    keys = {
        f"{role}_key": ANVIL_DEV_KEYS[i]
        for i, role in enumerate(("deployer", "operator", "anchorer"))
    }
    for external in make_api(data, rpc_url=devchain.rpc_url, anchoring=False, **keys):
        op = external.auth("operator")
        refused = _problem(
            external.client.post(
                "/v1/market/deposits", json={"account": 4, "amount": 5}, headers=op
            ),
            400,
        )
        assert "EnergyMarket.deposit(amount)" in refused["detail"]
        # read-only routes work on any chain
        assert _ok(external.client.get("/v1/market", headers=external.auth("reader")))
