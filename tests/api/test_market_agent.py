"""Forecast-driven market orders on a real platform (Anvil, SQLite, the AI worker, the agent's
round every 0.5 s): two homes opt in, the agent places an ask from one meter's forecast export
and a bid from the other's forecast import, once per interval, and the interval clears on-chain
at the orders' prices."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.cli import app
from chainsense.identity import DeviceKey
from chainsense.settlement import Order
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

from .conftest import Api, cli_through, make_api

pytestmark = pytest.mark.chain

METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1")
DEV = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]
SELLER, BUYER, IDLE = 3, 4, 5
SLOT_MS = 900_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("agent-api"), market_agent_poll_interval=0.5)


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _meter(api: Api, owner: int, imported: int, exported: int, days: int = 2) -> DeviceKey:
    """A meter of ``owner`` with ``days`` of 15-minute readings of constant energy."""
    key = DeviceKey.generate()
    body = {"address": key.address, "owner": DEV[owner]}
    _ok(api.client.post("/v1/devices", json=body, headers=api.auth("operator")), 201)
    end = int(time.time() * 1000) // SLOT_MS * SLOT_MS
    times = [end - k * SLOT_MS for k in range(days * 96, 0, -1)]
    readings = [
        api.sign(key, seq, (imported, exported), timestamp=t, schema=METER.id)
        for seq, t in enumerate(times, start=1)
    ]
    stored = _ok(api.client.post("/v1/readings", json={"readings": readings}))["stored"]
    assert stored == len(readings)
    return key


def _wait(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _orders(api: Api, interval: int) -> list[Order]:
    orders: list[Order] = api.client.portal.call(  # type: ignore[union-attr]
        api.platform.market_agent.market.orders, interval
    )
    return orders


def test_the_forecast_places_opted_in_orders_once_per_interval(api: Api) -> None:
    op, reader = api.auth("operator"), api.auth("reader")
    seller_meter = _meter(api, SELLER, imported=50, exported=600)  # net export 550 Wh
    buyer_meter = _meter(api, BUYER, imported=800, exported=0)  # net import 800 Wh

    def caught_up() -> bool:
        status = _ok(api.client.get("/v1/ai/status", headers=reader))
        return bool(status["lag_readings"] == 0 and status["cursor"] > 0)

    _wait(caught_up, "the AI worker")
    agent = _ok(api.client.get("/v1/market/agents", headers=reader))["agent"]
    assert agent == DEV[1]  # the operator key
    assert _ok(api.client.get("/v1/market", headers=reader))["agent"] == agent
    terms = {"meter": seller_meter.address, "ask_price": 120, "bid_price": 200}
    seller = f"/v1/market/agents/{DEV[SELLER]}"

    # refused: no on-chain permission yet, and a meter that is not the participant's
    refused = api.client.put(seller, json=terms, headers=op)
    assert refused.status_code == 409, refused.text
    assert f"setAgent({agent}, true)" in refused.json()["detail"]
    wrong = api.client.put(seller, json=terms | {"meter": buyer_meter.address}, headers=op)
    assert wrong.status_code == 409, wrong.text
    unknown = api.client.put(seller, json=terms | {"meter": "0x" + "ab" * 20}, headers=op)
    assert unknown.status_code == 404, unknown.text
    assert api.client.put(seller, json=terms, headers=reader).status_code == 403

    # opt in (the dev account signs setAgent), and the buyer deposits and opts in
    opted = _ok(api.client.put(seller, json=terms | {"account": SELLER}, headers=op))
    assert opted["allowed_on_chain"]
    assert opted["set_agent_tx"]["tx_hash"].startswith("0x")
    assert (opted["enabled"], opted["sell_share"], opted["max_wh"]) == (True, 80, 10_000)
    deposit = {"account": BUYER, "amount": 10**6}
    _ok(api.client.post("/v1/market/deposits", json=deposit, headers=op))
    buyer = f"/v1/market/agents/{DEV[BUYER]}"
    buyer_terms = terms | {"meter": buyer_meter.address, "account": BUYER}
    _ok(api.client.put(buyer, json=buyer_terms, headers=op))

    # the agent's round places both orders by itself
    def first_order(path: str) -> Any:
        orders = _ok(api.client.get(path, headers=reader))["orders"]
        return orders[-1] if orders else None

    ask = _wait(lambda: first_order(seller), "the seller's order")
    interval = ask["interval"]
    bid = _wait(lambda: first_order(buyer), "the buyer's order")
    assert bid["interval"] == interval
    assert (ask["side"], ask["quantity_wh"], ask["price_per_wh"]) == ("ask", 440, 120)
    assert (ask["expected_import_wh"], ask["expected_export_wh"]) == (50.0, 600.0)
    assert (bid["side"], bid["quantity_wh"], bid["price_per_wh"]) == ("bid", 800, 200)
    assert ask["recorded"]
    assert ask["order_id"]
    assert ask["tx_hash"]

    # on-chain: exactly these two orders, for the participants, the ask backed by the meter
    on_chain = {(o.participant, o.side, o.meter, o.quantity_wh, o.price_per_wh, o.id)
                for o in _orders(api, interval)}  # fmt: skip
    assert on_chain == {
        (DEV[SELLER], "ask", seller_meter.address, 440, 120, ask["order_id"]),
        (DEV[BUYER], "bid", None, 800, 200, bid["order_id"]),
    }
    # asking again for that interval returns the same order: nothing is placed twice
    again = _ok(api.client.post(f"{seller}/orders", json={"interval": interval}, headers=op))
    assert (again["order_id"], again["tx_hash"]) == (ask["order_id"], ask["tx_hash"])
    assert len(_orders(api, interval)) == 2

    # the plan for a later interval is the same rule, not recorded
    plan = _ok(api.client.get(f"{seller}/plan", params={"interval": interval + 8}, headers=reader))
    assert (plan["side"], plan["quantity_wh"], plan["recorded"]) == ("ask", 440, False)

    # the interval clears on-chain between the two limit prices
    length = _ok(api.client.get("/v1/market", headers=reader))["interval_seconds"]

    async def mine() -> None:
        w3 = api.platform.chain.client.w3
        await w3.provider.make_request("evm_mine", [interval * length])  # type: ignore[arg-type]

    api.client.portal.call(mine)  # type: ignore[union-attr]
    cleared = _ok(api.client.post(f"/v1/market/intervals/{interval}/clear", headers=op))
    assert (cleared["interval"]["price"], cleared["interval"]["sold_wh"]) == (160, 440)


def test_opt_out_missing_forecast_and_unknown_participants(api: Api) -> None:
    op, reader = api.auth("operator"), api.auth("reader")
    meter = DeviceKey.generate()  # registered, but it never sent a reading
    body = {"address": meter.address, "owner": DEV[IDLE]}
    _ok(api.client.post("/v1/devices", json=body, headers=op), 201)
    idle = f"/v1/market/agents/{DEV[IDLE]}"
    terms = {"meter": meter.address, "ask_price": 100, "bid_price": 150, "account": IDLE}
    _ok(api.client.put(idle, json=terms, headers=op))
    # any letter case of the address names the same participant (no checksum check)
    swapped = "/v1/market/agents/0x" + DEV[IDLE][2:].swapcase()
    assert _ok(api.client.get(swapped, headers=reader))["participant"] == DEV[IDLE]
    assert _ok(api.client.get(f"{swapped}/plan", headers=reader))["side"] == "none"
    tried = _ok(api.client.post(f"{idle}/orders", json={}, headers=op))
    assert (tried["side"], tried["recorded"]) == ("none", False)
    assert "no forecast" in tried["note"]

    disabled = _ok(api.client.delete(idle, headers=op))
    assert disabled["enabled"] is False
    assert disabled["allowed_on_chain"] is True
    gone = api.client.post(f"{idle}/orders", json={}, headers=op)
    assert gone.status_code == 404, gone.text
    assert api.client.get(f"/v1/market/agents/{DEV[7]}", headers=reader).status_code == 404
    listed = _ok(api.client.get("/v1/market/agents", headers=reader))
    assert listed["running"] is True
    assert DEV[IDLE] in {m["participant"] for m in listed["mandates"]}


def test_cli_enable_plan_place_status_disable(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mandate, the plan and the orders through the API (no data dir, no database); only
    the participant's setAgent goes to the chain from the CLI."""
    env = cli_through(api, monkeypatch)

    def cli(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, ["market", *args], env=env)
        assert result.exit_code == code, result.output
        return result.output

    home = 6
    meter = _meter(api, home, imported=300, exported=0)
    _wait(lambda: api.platform.ai and api.platform.ai.status()["lag_readings"] == 0, "the AI")
    out = cli("agent", "enable", "--meter", meter.address, "--ask-price", "90",
              "--bid-price", "150", "--account", str(home))  # fmt: skip
    assert re.search(r"setAgent: tx 0x[0-9a-f]{64}", out), out
    interval = _ok(api.client.get("/v1/market/agents", headers=api.auth("reader")))
    later = str(interval["next_interval"] + 4)
    broke = cli("agent", "plan", DEV[home], "--interval", later)
    assert "no order" in broke
    assert "free market balance is 0" in broke
    cli("deposit", "100000", "--account", str(home))
    placed = json.loads(cli("agent", "place", DEV[home], "--interval", later, "--json"))
    assert (placed["side"], placed["quantity_wh"], placed["price_per_wh"]) == ("bid", 300, 150)
    assert placed["order_id"] is not None
    assert str(placed["order_id"]) in cli("agent", "status")
    assert re.search(r"setAgent false: tx 0x", cli("agent", "disable", "--account", str(home)))
    assert "no enabled market mandate" in cli("agent", "place", DEV[home], code=1)
    assert "disabled" in cli("agent", "status")
    listed = json.loads(cli("agent", "status", "--json"))
    assert listed == _ok(api.client.get("/v1/market/agents", headers=api.auth("reader")))
    [mine] = [m for m in listed["mandates"] if m["participant"] == DEV[home]]
    assert (mine["enabled"], mine["allowed_on_chain"]) == (False, False)
    assert placed["order_id"] in [o["order_id"] for o in mine["orders"]]
    assert "had no mandate" in cli("agent", "disable", "--account", "9")
    assert "is not registered to" in cli(
        "agent", "enable", "--meter", meter.address, "--ask-price", "1", "--bid-price", "1",
        "--account", "9", code=2,
    )  # fmt: skip
    assert "not an address" in cli("agent", "plan", "0x12", code=2)
