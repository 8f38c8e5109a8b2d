"""``chainsense market agent``: opt in to (or out of) forecast-driven market orders, and see or
trigger what the agent does. The same rule as ``/v1/market/agents`` (see
:mod:`chainsense.settlement.agent`); a running ``chainsense serve`` places the orders by itself
every ``CHAINSENSE_MARKET_AGENT_POLL_INTERVAL`` seconds.

Mandates, the forecast's plans and the agent's orders live on the platform: every command goes
through its API (``/v1/market/agents``; ``--api`` after ``market``, else the settings every
command uses) with the key in ``CHAINSENSE_API_KEY`` (reader for ``status`` and ``plan``,
operator for the rest). The agent itself signs with the platform's operator key, on the platform.
Only the participant's own on-chain step, ``EnergyMarket.setAgent``, is signed here (``--account``
or ``CHAINSENSE_WALLET_KEY``) and sent to the chain directly.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from chainsense.cli._common import JsonOption, address_arg
from chainsense.cli.settlement import (
    Account,
    _Ctx,
    _go,
    _run_sync,
    _settings_of,
    _tx,
    platform_call,
    to_checksum_address,
)
from chainsense.errors import ConfigError

__all__ = ["agent_app"]

agent_app = typer.Typer(
    help="Forecast-driven orders: the AI forecast places your bids and asks.",
    no_args_is_help=True,
)

Interval = Annotated[
    int | None, typer.Option(help="Interval number (default: the next one taking orders).")
]


def _show_order(order: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(order))
        return
    what = (
        f"{order['side']} {order['quantity_wh']} Wh at {order['price_per_wh']}/Wh"
        if order["side"] != "none"
        else "no order"
    )
    placed = f" (order #{order['order_id']}, tx {order['tx_hash']})" if order["order_id"] else ""
    typer.echo(f"interval {order['interval']}: {what}{placed}\n  {order['note']}")


def _api(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
    cfg = _settings_of(ctx)
    return _run_sync(lambda: platform_call(cfg, method, path, **kwargs).json())


@agent_app.command("enable")
def enable(
    ctx: typer.Context,
    meter: Annotated[str, typer.Option(help="Your meter's address (its owner is you).")],
    ask_price: Annotated[int, typer.Option(min=1, help="Lowest price you sell at, per Wh.")],
    bid_price: Annotated[int, typer.Option(min=1, help="Highest price you buy at, per Wh.")],
    max_wh: Annotated[int, typer.Option(min=1, help="Most Wh per order.")] = 10_000,
    sell_share: Annotated[
        int, typer.Option(min=1, max=100, help="Percent of the forecast net export offered.")
    ] = 80,
    account: Account = None,
) -> None:
    """Opt in: allow the agent on-chain (setAgent) and save your mandate on the platform."""

    async def run(c: _Ctx) -> None:
        signer = c.user(account)
        address = to_checksum_address(meter)
        device = platform_call(c.settings, "GET", f"/v1/devices/{address}").json()
        if device["owner"] != signer.address:
            raise ConfigError(f"meter {meter} is not registered to {signer.address}")
        agent = platform_call(c.settings, "GET", "/v1/market/agents").json()["agent"]
        if not await c.s.market.is_agent(signer.address, agent):
            _tx(await c.s.market.set_agent(signer, agent, True), "setAgent: ")
        body = {"meter": address, "ask_price": ask_price, "bid_price": bid_price,
                "max_wh": max_wh, "sell_share": sell_share}  # fmt: skip
        saved = platform_call(
            c.settings, "PUT", f"/v1/market/agents/{signer.address}", json=body
        ).json()
        typer.echo(f"{saved['participant']}: the agent {agent} orders for meter "
                   f"{saved['meter']} (sell >= {ask_price}/Wh, buy <= {bid_price}/Wh)")  # fmt: skip

    _go(ctx, run)


@agent_app.command("disable")
def disable(ctx: typer.Context, account: Account = None) -> None:
    """Opt out: disable your mandate and withdraw the agent's on-chain permission."""

    async def run(c: _Ctx) -> None:
        signer = c.user(account)
        path = f"/v1/market/agents/{signer.address}"
        if platform_call(c.settings, "DELETE", path, ok=(404,)).status_code == 404:
            typer.echo(f"{signer.address} had no mandate")
        agent = platform_call(c.settings, "GET", "/v1/market/agents").json()["agent"]
        if await c.s.market.is_agent(signer.address, agent):
            _tx(await c.s.market.set_agent(signer, agent, False), "setAgent false: ")

    _go(ctx, run)


@agent_app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every mandate, whether it is allowed on-chain, and its latest orders (GET
    /v1/market/agents)."""
    found = _api(ctx, "GET", "/v1/market/agents")
    if as_json:
        typer.echo(json.dumps(found))
        return
    if not found["mandates"]:
        typer.echo("no mandates: opt in with `chainsense market agent enable`")
    for m in found["mandates"]:
        state = "enabled" if m["enabled"] else "disabled"
        allowed = "" if m["allowed_on_chain"] else ", NOT allowed on-chain (setAgent)"
        typer.echo(
            f"{m['participant']} meter {m['meter']}: {state}{allowed}; sell >= {m['ask_price']}, "
            f"buy <= {m['bid_price']}, <= {m['max_wh']} Wh, {m['sell_share']}% of export"
        )
        if m["last_error"]:
            typer.secho(f"  last error: {m['last_error']}", fg="yellow")
        for order in m["orders"][:5]:
            _show_order(order, False)


@agent_app.command("plan")
def plan(
    ctx: typer.Context, participant: str, interval: Interval = None, as_json: JsonOption = False
) -> None:
    """The order the forecast gives for an interval (nothing is sent)."""
    params = {} if interval is None else {"interval": interval}
    path = f"/v1/market/agents/{address_arg(participant)}/plan"
    _show_order(_api(ctx, "GET", path, params=params), as_json)


@agent_app.command("place")
def place(
    ctx: typer.Context, participant: str, interval: Interval = None, as_json: JsonOption = False
) -> None:
    """Place the forecast's order for an interval now (at most one per interval)."""
    path = f"/v1/market/agents/{address_arg(participant)}/orders"
    _show_order(_api(ctx, "POST", path, json={"interval": interval}), as_json)
