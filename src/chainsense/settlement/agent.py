"""Forecast-driven trading: the platform places a participant's energy-market orders from the AI
layer's meter forecast, as the participant's agent, once the participant opts in.

Opting in takes two steps, both the participant's own:

1. on-chain, ``EnergyMarket.setAgent(<the platform's operator address>, true)`` from the
   participant's wallet; without it the contract refuses every order the agent places for them,
   and ``setAgent(..., false)`` withdraws the permission at any time;
2. with the platform, a :class:`~chainsense.store.Mandate`: the meter whose forecast drives the
   orders, the lowest price it sells at, the highest price it buys at (token units per Wh), the
   most Wh per order, and the share of the forecast net export it offers.

For each interval the agent forecasts the meter's import and export over the interval (the
:class:`~chainsense.ai.forecast.SeasonalProfile` slots that overlap it, times the readings the
meter sends in the overlap, from the model states the AI worker saves; see
:func:`expected_energy`) and places at most one order (:func:`plan_order`):

- forecast net export (export - import) of at least 1 Wh: an ask of ``sell_share`` percent of it
  at ``ask_price``, backed by the meter. Sellers are paid only for the energy their anchored
  readings prove, so over-offering earns nothing and leaves buyers short; offering less than the
  forecast leaves room for a cloudier interval;
- forecast net import of at least 1 Wh: a bid for it at ``bid_price``, capped by what the
  participant's free market balance can reserve (a bid reserves quantity x price);
- otherwise no order. Every order is capped at ``max_wh``.

What the agent did is recorded once per participant and interval, and before placing it looks for
an order of the participant already on-chain for the interval (placed by the participant, or by
an agent that crashed before recording it), so it never orders twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, replace

from chainsense.ai.forecast import SeasonalProfile
from chainsense.chain.client import Signer
from chainsense.errors import ChainSenseError
from chainsense.settlement.market import EnergyMarketClient
from chainsense.store import AgentOrder, Mandate, Store

__all__ = [
    "AgentNotAllowedError",
    "EnergyForecast",
    "MarketAgent",
    "NoMandateError",
    "expected_energy",
    "plan_order",
]

log = logging.getLogger(__name__)

IMPORTED, EXPORTED = "energy_imported", "energy_exported"


class NoMandateError(ChainSenseError):
    """The participant has no enabled mandate with the platform."""


class AgentNotAllowedError(ChainSenseError):
    """The participant has not allowed the platform's agent on-chain (``setAgent``)."""


@dataclass(frozen=True)
class EnergyForecast:
    """A meter's expected energy over one market interval, Wh."""

    imported_wh: float
    exported_wh: float


def expected_energy(profile: SeasonalProfile, start_ms: int, end_ms: int) -> float | None:
    """The profile's expected total over ``[start_ms, end_ms)``: for each overlapping slot, the
    per-reading forecast times the readings expected in the overlap (overlap / the meter's mean
    time between readings; one reading per slot until a period is known). None if a slot has
    no forecast yet.

    >>> p = SeasonalProfile(interval_ms=900_000)
    >>> p.learn_one(100.0, 0); p.learn_one(300.0, 900_000)
    >>> expected_energy(p, 450_000, 1_350_000)  # half of each slot, one reading per slot
    200.0
    """
    slot = profile.interval_ms
    period = profile.period_ms or slot
    total = 0.0
    t = start_ms - start_ms % slot
    while t < end_ms:
        value = profile.predict_one(t)
        if value is None:
            return None
        total += max(0.0, value) * (min(end_ms, t + slot) - max(start_ms, t)) / period
        t += slot
    return total


def plan_order(
    mandate: Mandate, interval: int, forecast: EnergyForecast | None, free_balance: int
) -> AgentOrder:
    """The order the mandate asks for in ``interval`` given the forecast (not yet placed:
    ``order_id`` is None). ``side`` is ``none`` when there is nothing to order; ``note`` says
    why either way."""

    def order(side: str, quantity: int, price: int, note: str) -> AgentOrder:
        return AgentOrder(
            participant=mandate.participant, interval=interval, side=side,
            quantity_wh=quantity, price_per_wh=price, order_id=None, tx_hash=None,
            expected_import_wh=forecast.imported_wh if forecast else None,
            expected_export_wh=forecast.exported_wh if forecast else None, note=note,
        )  # fmt: skip

    if forecast is None:
        return order("none", 0, 0, "no forecast for the meter yet: the AI worker has not "
                     "seen its readings in this time of the day")  # fmt: skip
    net = forecast.exported_wh - forecast.imported_wh
    basis = (
        f"forecast export {forecast.exported_wh:.0f} Wh - import {forecast.imported_wh:.0f} Wh "
        f"= {net:+.0f} Wh"
    )
    if net >= 1:
        quantity = min(math.floor(net * mandate.sell_share / 100), mandate.max_wh)
        if quantity < 1:
            return order("none", 0, 0, f"{basis}; {mandate.sell_share}% of it is under 1 Wh")
        return order("ask", quantity, mandate.ask_price,
                     f"{basis}; offering {quantity} Wh ({mandate.sell_share}%, at most "
                     f"{mandate.max_wh})")  # fmt: skip
    if net <= -1:
        need = min(math.ceil(-net), mandate.max_wh)
        quantity = min(need, free_balance // mandate.bid_price)
        if quantity < 1:
            return order("none", 0, 0, f"{basis}; a bid for {need} Wh at {mandate.bid_price}/Wh "
                         f"needs {need * mandate.bid_price} but the free market balance is "
                         f"{free_balance}")  # fmt: skip
        capped = f", capped by the free balance {free_balance}" if quantity < need else ""
        return order("bid", quantity, mandate.bid_price, f"{basis}; bidding {quantity} Wh{capped}")
    return order("none", 0, 0, f"{basis}: nothing to trade")


class MarketAgent:
    """Places opted-in participants' orders with ``signer`` (the platform's operator key).

    :meth:`place` acts for one participant and interval (default: the next interval that still
    takes orders); :meth:`run` does it for every enabled mandate every ``poll_interval`` seconds.
    """

    def __init__(
        self, *, store: Store, market: EnergyMarketClient, signer: Signer,
        poll_interval: float = 30.0,
    ) -> None:  # fmt: skip
        self.store = store
        self.market = market
        self.signer = signer
        self.poll_interval = poll_interval
        self._lock = asyncio.Lock()  # one placement at a time: the round and API calls race

    @property
    def address(self) -> str:
        """The agent's address: what participants pass to ``EnergyMarket.setAgent``."""
        return self.signer.address

    async def next_interval(self) -> int:
        """The first interval that still takes orders at the latest block."""
        client = self.market.client
        block = await client.rpc(lambda: client.w3.eth.get_block("latest"))
        return int(block["timestamp"]) // await self.market.interval_seconds() + 1

    async def forecast(self, meter: str, interval: int) -> EnergyForecast | None:
        """The meter's expected import and export over ``interval``, from the saved models."""
        length_ms = await self.market.interval_seconds() * 1000
        states = await self.store.anomalies.states(device=meter, model="profile")
        profiles = {metric: SeasonalProfile.from_state(s) for (_, metric, _), s in states.items()}
        if IMPORTED not in profiles or EXPORTED not in profiles:
            return None
        start = interval * length_ms
        imported = expected_energy(profiles[IMPORTED], start, start + length_ms)
        exported = expected_energy(profiles[EXPORTED], start, start + length_ms)
        if imported is None or exported is None:
            return None
        return EnergyForecast(imported, exported)

    async def _mandate(self, participant: str) -> Mandate:
        mandate = await self.store.market_agents.mandate(participant)
        if mandate is None or not mandate.enabled:
            raise NoMandateError(f"{participant} has no enabled market mandate")
        return mandate

    async def plan(self, participant: str, interval: int | None = None) -> AgentOrder:
        """What :meth:`place` would order now (nothing is sent or recorded)."""
        mandate = await self._mandate(participant)
        interval = interval if interval is not None else await self.next_interval()
        return plan_order(
            mandate,
            interval,
            await self.forecast(mandate.meter, interval),
            await self.market.balance_of(mandate.participant),
        )

    async def place(self, participant: str, interval: int | None = None) -> AgentOrder:
        """Act for the participant in ``interval``, once: place the planned order and record it,
        or return what was recorded before. A missing forecast is returned unrecorded (the next
        try may have one). Raises NoMandateError, AgentNotAllowedError, or the contract's
        SettlementError (e.g. DeadlineError once the interval has started)."""
        async with self._lock:
            return await self._place(participant, interval)

    async def _place(self, participant: str, interval: int | None) -> AgentOrder:
        mandate = await self._mandate(participant)
        participant = mandate.participant
        interval = interval if interval is not None else await self.next_interval()
        done = await self.store.market_agents.order(participant, interval)
        if done is not None:
            return done
        for existing in await self.market.orders(interval):
            if existing.participant == participant:
                return await self.store.market_agents.record(
                    AgentOrder(
                        participant=participant, interval=interval, side=existing.side,
                        quantity_wh=existing.quantity_wh, price_per_wh=existing.price_per_wh,
                        order_id=existing.id, tx_hash=None, expected_import_wh=None,
                        expected_export_wh=None,
                        note=f"order #{existing.id} of the participant was already on-chain; "
                        "not placed again",
                    )
                )  # fmt: skip
        if not await self.market.is_agent(participant, self.address):
            raise AgentNotAllowedError(
                f"{participant} has not allowed the agent on-chain: call "
                f"EnergyMarket.setAgent({self.address}, true) from its wallet"
            )
        plan = await self.plan(participant, interval)
        if plan.side == "none" and plan.expected_import_wh is None:
            return plan  # no forecast yet: try again later
        if plan.side == "bid":
            order_id, tx = await self.market.place_bid(
                self.signer, participant=participant, interval=interval,
                quantity_wh=plan.quantity_wh, price_per_wh=plan.price_per_wh,
            )  # fmt: skip
        elif plan.side == "ask":
            order_id, tx = await self.market.place_ask(
                self.signer, participant=participant, interval=interval, meter=mandate.meter,
                quantity_wh=plan.quantity_wh, price_per_wh=plan.price_per_wh,
            )  # fmt: skip
        else:
            return await self.store.market_agents.record(plan)
        log.info("market agent: %s %s %d Wh at %d in interval %d (order %d)", participant,
                 plan.side, plan.quantity_wh, plan.price_per_wh, interval, order_id)  # fmt: skip
        return await self.store.market_agents.record(
            replace(plan, order_id=order_id, tx_hash=tx.tx_hash)
        )

    async def run_once(self) -> list[AgentOrder]:
        """:meth:`place` for every enabled mandate in the next interval; a participant's failure
        is saved as its mandate's ``last_error`` and does not stop the others."""
        done = []
        interval = await self.next_interval()
        for mandate in await self.store.market_agents.mandates(enabled_only=True):
            try:
                done.append(await self.place(mandate.participant, interval))
            except ChainSenseError as exc:
                log.warning("market agent: %s, interval %d: %s", mandate.participant, interval,
                            exc)  # fmt: skip
                await self.store.market_agents.set_error(mandate.participant, str(exc))
            else:
                if mandate.last_error is not None:
                    await self.store.market_agents.set_error(mandate.participant, None)
        return done

    async def run(self) -> None:
        """:meth:`run_once` every ``poll_interval`` seconds until cancelled."""
        while True:
            try:
                await self.run_once()
            except ChainSenseError as exc:  # chain or store down: try again later
                log.warning("market agent: %s", exc)
            except Exception:  # a bug must not end the rounds of every participant for good
                log.exception("market agent: round failed")
            await asyncio.sleep(self.poll_interval)
