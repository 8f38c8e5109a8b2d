"""/v1/market: peer-to-peer energy trading (EnergyMarket) — deposits and orders (dev chain),
interval state, on-chain clearing, delivery proofs from stored meter readings, bid settlement."""

from __future__ import annotations

import enum
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, model_validator

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.inputs import InputModel
from chainsense.api.routes._listing import ListCursor, ListLimit, newest_ids
from chainsense.api.routes._settlement import (
    MAX_AMOUNT,
    PROBLEMS,
    Address,
    DevAccount,
    ReadingRef,
    TxPublic,
    dev_signer,
    evidence_of,
    settlement_of,
    tx_public,
)

__all__ = ["router"]

router = APIRouter(prefix="/market", tags=["settlement: energy market"], responses=PROBLEMS)

IntervalId = Annotated[
    int, Path(ge=0, lt=2**63, description="Interval number: start time // interval seconds")
]
OrderId = Annotated[int, Path(ge=1, lt=2**63, description="The order id")]


class MarketPublic(BaseModel):
    address: str
    interval_seconds: int
    current_interval: int = Field(description="The interval containing the latest block")
    next_open_interval: int = Field(description="The first interval that still takes orders")
    agent: str = Field(
        description="The platform's market agent: allow it with `setAgent` to have the AI "
        "forecast place your orders (`/v1/market/agents`)"
    )


class IntervalPublic(BaseModel):
    interval: int
    starts_at: int = Field(description="Block time the interval starts (orders close)")
    cleared: bool
    price: int = Field(description="Uniform clearing price, token units per Wh (0: no trade)")
    sold_wh: int
    delivered_wh: int = Field(description="Wh proven delivered by anchored meter readings")


class Deposit(InputModel):
    account: DevAccount
    amount: int = Field(gt=0, le=MAX_AMOUNT)


class DepositDone(BaseModel):
    participant: str
    balance: int = Field(description="Free balance in the market after the deposit")
    tx: TxPublic


class Side(enum.StrEnum):
    bid = "bid"
    ask = "ask"


class OrderIn(InputModel):
    account: DevAccount
    side: Side
    interval: int = Field(ge=0, lt=2**63)
    quantity_wh: int = Field(gt=0, lt=2**63)
    price_per_wh: int = Field(gt=0, le=MAX_AMOUNT, description="Limit price, token units per Wh")
    meter: Address | None = Field(
        default=None, description="Asks: the meter the participant owns that will prove delivery"
    )

    @model_validator(mode="after")
    def _meter(self) -> OrderIn:
        if (self.side is Side.ask) != (self.meter is not None):
            raise ValueError("an ask names its meter; a bid does not")
        return self


class OrderPlaced(BaseModel):
    id: int
    participant: str
    tx: TxPublic


class OrderPublic(BaseModel):
    id: int
    participant: str
    side: str = Field(description="bid or ask")
    interval: int
    meter: str | None = Field(description="Asks: the meter that proves delivery")
    quantity_wh: int
    price_per_wh: int
    interval_state: IntervalPublic = Field(description="The interval's clearing state")


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_cursor: int | None = Field(description="Pass as cursor for older orders")


class IntervalTx(BaseModel):
    tx: TxPublic
    interval: IntervalPublic


async def _interval(platform: PlatformDep, interval: int) -> IntervalPublic:
    market = settlement_of(platform).market
    state = await market.interval(interval)
    return IntervalPublic(
        interval=interval,
        starts_at=interval * await market.interval_seconds(),
        cleared=state.cleared,
        price=state.price,
        sold_wh=state.sold_wh,
        delivered_wh=state.delivered_wh,
    )


@router.get("", response_model=MarketPublic, summary="The market's interval clock")
async def get_market(platform: PlatformDep, _key: ReaderDep) -> MarketPublic:
    market = settlement_of(platform).market
    length = await market.interval_seconds()
    now = int((await platform.chain.client.w3.eth.get_block("latest"))["timestamp"])
    return MarketPublic(
        address=market.address,
        interval_seconds=length,
        current_interval=now // length,
        next_open_interval=now // length + 1,
        agent=platform.market_agent.address,
    )


@router.post(
    "/deposits",
    response_model=DepositDone,
    summary="Deposit into the market (dev chain only)",
    description="Signs token `approve` and `EnergyMarket.deposit(amount)` with the dev account. "
    "Dev-chain convenience; elsewhere participants call `EnergyMarket.deposit` themselves.",
)
async def deposit(body: Deposit, platform: PlatformDep, _key: OperatorDep) -> DepositDone:
    signer = dev_signer(platform, body.account, "EnergyMarket.deposit(amount)")
    market = settlement_of(platform).market
    tx = await market.deposit(signer, body.amount)
    return DepositDone(
        participant=signer.address,
        balance=await market.balance_of(signer.address),
        tx=tx_public(tx),
    )


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderPlaced,
    summary="Place a bid or a meter-backed ask (dev chain only)",
    description="Signs `EnergyMarket.placeBid(participant, interval, quantityWh, pricePerWh)` or "
    "`placeAsk(participant, interval, meter, quantityWh, pricePerWh)` with the dev account, "
    "before the interval starts. Dev-chain convenience; elsewhere participants (or an agent "
    "they opted in with `setAgent`) call the contract themselves.",
)
async def place_order(body: OrderIn, platform: PlatformDep, _key: OperatorDep) -> OrderPlaced:
    signer = dev_signer(platform, body.account, f"EnergyMarket.place{body.side.title()}(...)")
    market = settlement_of(platform).market
    if body.side is Side.bid:
        order, tx = await market.place_bid(
            signer,
            interval=body.interval,
            quantity_wh=body.quantity_wh,
            price_per_wh=body.price_per_wh,
        )
    else:
        assert body.meter is not None
        order, tx = await market.place_ask(
            signer,
            interval=body.interval,
            meter=to_checksum_address(body.meter),
            quantity_wh=body.quantity_wh,
            price_per_wh=body.price_per_wh,
        )
    return OrderPlaced(id=order, participant=signer.address, tx=tx_public(tx))


@router.get("/orders", response_model=OrderPage, summary="Market orders, newest first")
async def list_orders(
    platform: PlatformDep, _key: ReaderDep, cursor: ListCursor = None, limit: ListLimit = 20
) -> OrderPage:
    market = settlement_of(platform).market
    zero = "0x" + "00" * 20

    async def exists(n: int) -> bool:
        return (await market.order(n)).participant.lower() != zero

    ids, next_cursor = await newest_ids(exists, cursor, limit)
    intervals: dict[int, IntervalPublic] = {}
    items = []
    for n in ids:
        order = await market.order(n)
        if order.interval not in intervals:
            intervals[order.interval] = await _interval(platform, order.interval)
        items.append(
            OrderPublic(
                id=order.id,
                participant=order.participant,
                side=order.side,
                interval=order.interval,
                meter=order.meter,
                quantity_wh=order.quantity_wh,
                price_per_wh=order.price_per_wh,
                interval_state=intervals[order.interval],
            )
        )
    return OrderPage(items=items, next_cursor=next_cursor)


@router.get("/intervals/{interval}", response_model=IntervalPublic, summary="An interval")
async def get_interval(
    interval: IntervalId, platform: PlatformDep, _key: ReaderDep
) -> IntervalPublic:
    return await _interval(platform, interval)


@router.post(
    "/intervals/{interval}/clear",
    response_model=IntervalTx,
    summary="Clear a started interval (on-chain uniform-price double auction)",
    description="`EnergyMarket.clear(interval)` (anyone may call it), sent with the operator key.",
)
async def clear_interval(
    interval: IntervalId, platform: PlatformDep, _key: OperatorDep
) -> IntervalTx:
    tx = await settlement_of(platform).market.clear(platform.chain.operator, interval)
    return IntervalTx(tx=tx_public(tx), interval=await _interval(platform, interval))


@router.post(
    "/orders/{order}/delivery",
    response_model=TxPublic,
    summary="Prove an ask's delivery from a stored, anchored meter reading",
    description="Builds the evidence from the reading's proof and submits "
    "`EnergyMarket.proveDelivery(ask, ...)` with the operator key (anyone may prove a "
    "delivery). The seller is credited price x min(sold, exported Wh). 409 while the reading's "
    "batch is not anchored.",
)
async def prove_delivery(
    order: OrderId, body: ReadingRef, platform: PlatformDep, _key: OperatorDep
) -> TxPublic:
    evidence = await evidence_of(platform, body.reading_id)
    market = settlement_of(platform).market
    return tx_public(await market.prove_delivery(platform.chain.operator, order, evidence))


@router.post(
    "/orders/{order}/finalize",
    response_model=TxPublic,
    summary="Settle a bid after the delivery deadline",
    description="`EnergyMarket.finalizeBid(bid)` (anyone may call it), with the operator key: "
    "the buyer pays its pro-rata share of the delivered energy, the rest returns to its free "
    "balance.",
)
async def finalize_bid(order: OrderId, platform: PlatformDep, _key: OperatorDep) -> TxPublic:
    market = settlement_of(platform).market
    return tx_public(await market.finalize_bid(platform.chain.operator, order))
