"""/v1/market/agents: forecast-driven orders for participants who opt in (see
:mod:`chainsense.settlement.agent` for the rule the agent follows)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.inputs import InputModel
from chainsense.api.routes._settlement import (
    PROBLEMS,
    Address,
    DevAccount,
    TxPublic,
    dev_signer,
    settlement_of,
    tx_public,
)
from chainsense.settlement.agent import MarketAgent
from chainsense.store import AgentOrder, Mandate

__all__ = ["router"]

router = APIRouter(prefix="/market/agents", tags=["settlement: energy market"], responses=PROBLEMS)

Participant = Annotated[
    str, Path(pattern=r"^0x[0-9a-fA-F]{40}$", description="The participant's address")
]
#: Bound of the mandate's numbers and interval ids: they are stored as 64-bit integers, and a
#: bound under 2^53 is one JSON Schema (and every client that reads numbers as floats) states
#: exactly.
MAX_NUMBER = 10**15
Price = Annotated[int, Field(gt=0, le=MAX_NUMBER, description="Token units per Wh")]


class MandateIn(InputModel):
    """What the agent may do for the participant."""

    meter: Address = Field(description="The participant's meter (owner in the DeviceRegistry)")
    ask_price: Price = Field(description="Lowest price it sells at, token units per Wh")
    bid_price: Price = Field(description="Highest price it buys at, token units per Wh")
    max_wh: int = Field(default=10_000, gt=0, le=MAX_NUMBER, description="Most Wh per order")
    sell_share: int = Field(
        default=80, ge=1, le=100, description="Percent of the forecast net export offered"
    )
    account: DevAccount | None = Field(
        default=None,
        description="Dev chain only: the participant's dev account; the route then also signs "
        "`EnergyMarket.setAgent(agent, true)` with it. Elsewhere the participant calls "
        "`setAgent` from its own wallet first.",
    )


class AgentOrderPublic(BaseModel):
    participant: str
    interval: int
    side: str = Field(description="bid, ask, or none (no order; see note)")
    quantity_wh: int
    price_per_wh: int
    order_id: int | None = Field(description="The EnergyMarket order id, once placed")
    tx_hash: str | None
    expected_import_wh: float | None = Field(description="Forecast import over the interval")
    expected_export_wh: float | None = Field(description="Forecast export over the interval")
    note: str = Field(description="Why this order (or none)")
    recorded: bool = Field(description="False for a plan or a try without a forecast yet")
    created_at: datetime | None


class MandatePublic(BaseModel):
    participant: str
    meter: str
    ask_price: int
    bid_price: int
    max_wh: int
    sell_share: int
    enabled: bool
    last_error: str | None = Field(description="Why the agent's last try for it failed")
    agent: str = Field(description="The agent's address (the platform's operator key)")
    allowed_on_chain: bool = Field(description="EnergyMarket.isAgent(participant, agent)")
    set_agent_tx: TxPublic | None = Field(default=None, description="Dev-chain opt-in tx")
    orders: list[AgentOrderPublic] = Field(description="The latest intervals first")


class AgentsPublic(BaseModel):
    agent: str
    running: bool = Field(description="Whether the agent places orders every poll_seconds")
    poll_seconds: float
    next_interval: int = Field(description="The interval the agent orders for now")
    mandates: list[MandatePublic]


class PlaceIn(InputModel):
    interval: int | None = Field(
        default=None, ge=0, le=MAX_NUMBER, description="Default: the next interval taking orders"
    )


def _agent(platform: PlatformDep) -> MarketAgent:
    return platform.market_agent


def _order(order: AgentOrder) -> AgentOrderPublic:
    return AgentOrderPublic(**asdict(order), recorded=order.created_at is not None)


async def _public(
    platform: PlatformDep, mandate: Mandate, set_agent_tx: TxPublic | None = None
) -> MandatePublic:
    agent = _agent(platform)
    orders = await platform.store.market_agents.orders(mandate.participant)
    return MandatePublic(
        **asdict(mandate),  # created_at and updated_at are not part of the answer
        agent=agent.address,
        allowed_on_chain=await agent.market.is_agent(mandate.participant, agent.address),
        set_agent_tx=set_agent_tx,
        orders=[_order(o) for o in orders],
    )


async def _mandate(platform: PlatformDep, participant: str) -> Mandate:
    participant = to_checksum_address(participant)
    mandate = await platform.store.market_agents.mandate(participant)
    if mandate is None:
        raise HTTPException(404, f"{participant} has no market mandate")
    return mandate


@router.get("", response_model=AgentsPublic, summary="The market agent and its mandates")
async def list_agents(platform: PlatformDep, _key: ReaderDep) -> AgentsPublic:
    agent = _agent(platform)
    return AgentsPublic(
        agent=agent.address,
        running=platform.settings.market_agent,
        poll_seconds=agent.poll_interval,
        next_interval=await agent.next_interval(),
        mandates=[
            await _public(platform, m) for m in await platform.store.market_agents.mandates()
        ],
    )


@router.put(
    "/{participant}",
    response_model=MandatePublic,
    summary="Opt in: let the AI forecast place the participant's orders",
    description="Saves the participant's mandate. The participant must have allowed the agent "
    "on-chain with `EnergyMarket.setAgent(agent, true)` (409 otherwise; `agent` is in `GET "
    "/v1/market/agents`); on the dev chain `account` does that step too. 404 when the meter is "
    "not registered, 409 when it is not the participant's. From then on, every round the "
    "agent forecasts the meter's import and export over the next interval and places a bid "
    "(net import) or an ask (net export).",
)
async def put_mandate(
    participant: Participant, body: MandateIn, platform: PlatformDep, _key: OperatorDep
) -> MandatePublic:
    agent = _agent(platform)
    participant = to_checksum_address(participant)
    meter = await platform.store.devices.get(to_checksum_address(body.meter))
    if meter is None:
        raise HTTPException(404, f"no device {to_checksum_address(body.meter)} is registered")
    if meter.owner != participant:
        raise HTTPException(409, f"meter {meter.address} belongs to {meter.owner}, not to "
                            f"{participant}")  # fmt: skip
    set_agent_tx = None
    if body.account is not None:
        signer = dev_signer(platform, body.account, "EnergyMarket.setAgent(agent, true)")
        if signer.address != participant:
            raise HTTPException(409, f"dev account {body.account} is {signer.address}, "
                                f"not {participant}")  # fmt: skip
        market = settlement_of(platform).market
        set_agent_tx = tx_public(await market.set_agent(signer, agent.address, True))
    if not await agent.market.is_agent(participant, agent.address):
        raise HTTPException(
            409,
            f"{participant} has not allowed the agent on-chain: call "
            f"EnergyMarket.setAgent({agent.address}, true) from its wallet",
        )
    mandate = await platform.store.market_agents.save_mandate(
        Mandate(
            participant=participant, meter=meter.address, ask_price=body.ask_price,
            bid_price=body.bid_price, max_wh=body.max_wh, sell_share=body.sell_share,
        )
    )  # fmt: skip
    return await _public(platform, mandate, set_agent_tx)


@router.get("/{participant}", response_model=MandatePublic, summary="A participant's mandate")
async def get_mandate(
    participant: Participant, platform: PlatformDep, _key: ReaderDep
) -> MandatePublic:
    return await _public(platform, await _mandate(platform, participant))


@router.delete(
    "/{participant}",
    response_model=MandatePublic,
    summary="Opt out: the agent places no more orders for the participant",
    description="Disables the mandate (orders already placed stay). The on-chain permission "
    "stays until the participant calls `EnergyMarket.setAgent(agent, false)`.",
)
async def delete_mandate(
    participant: Participant, platform: PlatformDep, _key: OperatorDep
) -> MandatePublic:
    mandate = await _mandate(platform, participant)
    await platform.store.market_agents.set_enabled(mandate.participant, False)
    return await _public(platform, await _mandate(platform, participant))


@router.get(
    "/{participant}/plan",
    response_model=AgentOrderPublic,
    summary="The order the forecast gives for an interval (nothing is sent)",
)
async def plan_order(
    participant: Participant,
    platform: PlatformDep,
    _key: ReaderDep,
    interval: Annotated[
        int | None, Query(ge=0, le=MAX_NUMBER, description="Default: the next interval")
    ] = None,
) -> AgentOrderPublic:
    return _order(await _agent(platform).plan(to_checksum_address(participant), interval))


@router.post(
    "/{participant}/orders",
    response_model=AgentOrderPublic,
    summary="Place the forecast's order for an interval now",
    description="What the agent does every round, for one participant: at most one order per "
    "interval (a second call returns the first result). `recorded` is false when the meter has "
    "no forecast yet. 409 when the interval has started or the agent is not allowed on-chain; "
    "402 when the contract refuses the bid for the participant's balance.",
)
async def place_order(
    participant: Participant, body: PlaceIn, platform: PlatformDep, _key: OperatorDep
) -> AgentOrderPublic:
    return _order(await _agent(platform).place(to_checksum_address(participant), body.interval))
