"""``chainsense market agent``: opt in to (or out of) forecast-driven market orders, and see or
trigger what the agent does. The same rule as ``/v1/market/agents`` (see
:mod:`chainsense.settlement.agent`); a running ``chainsense serve`` places the orders by itself
every ``CHAINSENSE_MARKET_AGENT_POLL_INTERVAL`` seconds.

Mandates and records live in the platform's database (``CHAINSENSE_DATA_DIR`` or
``CHAINSENSE_DATABASE_URL``); the agent signs with the operator key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from chainsense.cli.settlement import Account, _Ctx, _go, _tx, to_checksum_address
from chainsense.errors import ConfigError

if TYPE_CHECKING:
    from chainsense.settlement.agent import MarketAgent
    from chainsense.store import AgentOrder, Mandate

__all__ = ["agent_app"]

T = TypeVar("T")

agent_app = typer.Typer(
    help="Forecast-driven orders: the AI forecast places your bids and asks.",
    no_args_is_help=True,
)

Interval = Annotated[
    int | None, typer.Option(help="Interval number (default: the next one taking orders).")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@asynccontextmanager
async def _open_agent(c: _Ctx) -> AsyncIterator[MarketAgent]:
    from chainsense.cli.proof import _service
    from chainsense.settlement.agent import MarketAgent

    store, _ = await _service(c.settings)  # the platform's database, or a clear error
    try:
        yield MarketAgent(store=store, market=c.s.market, signer=c.operator())
    finally:
        await store.close()


def _with_agent(
    ctx: typer.Context, action: Callable[[_Ctx, MarketAgent], Awaitable[T]]
) -> T:  # fmt: skip
    async def run(c: _Ctx) -> T:
        async with _open_agent(c) as agent:
            return await action(c, agent)

    return _go(ctx, run)


def _show_order(order: AgentOrder, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(asdict(order), default=str))
        return
    what = (
        f"{order.side} {order.quantity_wh} Wh at {order.price_per_wh}/Wh"
        if order.side != "none"
        else "no order"
    )
    placed = f" (order #{order.order_id}, tx {order.tx_hash})" if order.order_id else ""
    typer.echo(f"interval {order.interval}: {what}{placed}\n  {order.note}")


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
    """Opt in: allow the agent on-chain (setAgent) and save your mandate."""
    from chainsense.store import Mandate

    async def run(c: _Ctx, agent: MarketAgent) -> None:
        signer = c.user(account)
        device = await agent.store.devices.get(to_checksum_address(meter))
        if device is None or device.owner != signer.address:
            raise ConfigError(f"meter {meter} is not registered to {signer.address}")
        if not await agent.market.is_agent(signer.address, agent.address):
            _tx(await agent.market.set_agent(signer, agent.address, True), "setAgent: ")
        saved = await agent.store.market_agents.save_mandate(
            Mandate(
                participant=signer.address, meter=device.address, ask_price=ask_price,
                bid_price=bid_price, max_wh=max_wh, sell_share=sell_share,
            )
        )  # fmt: skip
        typer.echo(f"{saved.participant}: the agent {agent.address} orders for meter "
                   f"{saved.meter} (sell >= {ask_price}/Wh, buy <= {bid_price}/Wh)")  # fmt: skip

    _with_agent(ctx, run)


@agent_app.command("disable")
def disable(ctx: typer.Context, account: Account = None) -> None:
    """Opt out: disable your mandate and withdraw the agent's on-chain permission."""

    async def run(c: _Ctx, agent: MarketAgent) -> None:
        signer = c.user(account)
        if not await agent.store.market_agents.set_enabled(signer.address, False):
            typer.echo(f"{signer.address} had no mandate")
        if await agent.market.is_agent(signer.address, agent.address):
            _tx(await agent.market.set_agent(signer, agent.address, False), "setAgent false: ")

    _with_agent(ctx, run)


@agent_app.command("status")
def status(ctx: typer.Context, as_json: Json = False) -> None:
    """Every mandate, whether it is allowed on-chain, and its latest orders."""

    async def run(_: _Ctx, agent: MarketAgent) -> list[dict[str, Any]]:
        out = []
        for m in await agent.store.market_agents.mandates():
            orders = await agent.store.market_agents.orders(m.participant, limit=5)
            allowed = await agent.market.is_agent(m.participant, agent.address)
            out.append({"mandate": m, "allowed_on_chain": allowed, "orders": orders})
        return out

    rows = _with_agent(ctx, run)
    if as_json:
        typer.echo(json.dumps([{**r, "mandate": asdict(r["mandate"]),
                                "orders": [asdict(o) for o in r["orders"]]} for r in rows],
                              default=str))  # fmt: skip
        return
    if not rows:
        typer.echo("no mandates: opt in with `chainsense market agent enable`")
    for r in rows:
        m: Mandate = r["mandate"]
        state = "enabled" if m.enabled else "disabled"
        allowed = "" if r["allowed_on_chain"] else ", NOT allowed on-chain (setAgent)"
        typer.echo(
            f"{m.participant} meter {m.meter}: {state}{allowed}; sell >= {m.ask_price}, "
            f"buy <= {m.bid_price}, <= {m.max_wh} Wh, {m.sell_share}% of export"
        )
        if m.last_error:
            typer.secho(f"  last error: {m.last_error}", fg="yellow")
        for order in r["orders"]:
            _show_order(order, False)


@agent_app.command("plan")
def plan(
    ctx: typer.Context, participant: str, interval: Interval = None, as_json: Json = False
) -> None:
    """The order the forecast gives for an interval (nothing is sent)."""
    order = _with_agent(ctx, lambda _, agent: agent.plan(participant, interval))
    _show_order(order, as_json)


@agent_app.command("place")
def place(
    ctx: typer.Context, participant: str, interval: Interval = None, as_json: Json = False
) -> None:
    """Place the forecast's order for an interval now (at most one per interval)."""
    order = _with_agent(ctx, lambda _, agent: agent.place(participant, interval))
    _show_order(order, as_json)
