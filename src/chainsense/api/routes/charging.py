"""/v1/charging: pay-per-use charging (ChargingPayments) — price and open (dev chain), session
state, close with the charger's stored, anchored reading, refund after the timeout."""

from __future__ import annotations

from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.inputs import InputModel
from chainsense.api.routes._listing import ListCursor, ListLimit, newest_ids
from chainsense.api.routes._settlement import (
    MAX_AMOUNT,
    PROBLEMS,
    DevAccount,
    ReadingRef,
    TxPublic,
    dev_signer,
    evidence_of,
    settlement_of,
    tx_public,
)
from chainsense.settlement import SessionStatus

__all__ = ["router"]

router = APIRouter(prefix="/charging", tags=["settlement: charging"], responses=PROBLEMS)

SessionId = Annotated[int, PathParam(ge=1, lt=2**63, description="The session id")]
ChargerPath = Annotated[
    str, PathParam(pattern=r"^0x[0-9a-fA-F]{40}$", description="The charger's device address")
]


class PriceIn(InputModel):
    account: DevAccount
    price_per_wh: int = Field(ge=0, le=MAX_AMOUNT, description="Token units per Wh")


class SessionOpen(InputModel):
    account: DevAccount
    charger: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    deposit: int = Field(gt=0, le=MAX_AMOUNT, description="Token units; the most the session costs")


class SessionClose(ReadingRef):
    account: DevAccount | None = Field(
        default=None,
        description="Dev chain only: the station's dev account. Without it the operator key "
        "signs, which the contract accepts only when the operator owns the charger.",
    )


class SessionPublic(BaseModel):
    id: int
    vehicle: str
    charger: str
    station: str
    status: str = Field(examples=["open"], description="open, closed or refunded")
    opened_at: int
    energy_wh: int
    price_per_wh: int
    deposit: int
    amount_due: int


class SessionPage(BaseModel):
    items: list[SessionPublic]
    next_cursor: int | None = Field(description="Pass as cursor for older sessions")


class SessionTx(BaseModel):
    tx: TxPublic
    session: SessionPublic


async def _public(platform: PlatformDep, session: int) -> SessionPublic:
    state = await settlement_of(platform).charging.session(session)
    if state.status is SessionStatus.NONE:
        raise HTTPException(404, f"no charging session {session}")
    return SessionPublic(
        id=session,
        vehicle=state.vehicle,
        charger=state.charger,
        station=state.station,
        status=state.status.name.lower(),
        opened_at=state.opened_at,
        energy_wh=state.energy_wh,
        price_per_wh=state.price_per_wh,
        deposit=state.deposit,
        amount_due=state.amount_due,
    )


@router.put(
    "/chargers/{charger}/price",
    response_model=TxPublic,
    summary="Set a charger's price (dev chain only)",
    description="Signs `ChargingPayments.setPrice(charger, pricePerWh)` with the station's dev "
    "account (the charger's owner in the DeviceRegistry). Dev-chain convenience.",
)
async def set_price(
    charger: ChargerPath, body: PriceIn, platform: PlatformDep, _key: OperatorDep
) -> TxPublic:
    signer = dev_signer(platform, body.account, "ChargingPayments.setPrice(charger, pricePerWh)")
    charging = settlement_of(platform).charging
    address = to_checksum_address(charger)
    return tx_public(await charging.set_price(signer, address, body.price_per_wh))


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionTx,
    summary="Open a charging session with a deposit (dev chain only)",
    description="Signs token `approve` and `ChargingPayments.openSession(charger, deposit)` "
    "with the vehicle's dev account. Dev-chain convenience; elsewhere the vehicle's wallet "
    "calls the contract.",
)
async def open_session(body: SessionOpen, platform: PlatformDep, _key: OperatorDep) -> SessionTx:
    signer = dev_signer(platform, body.account, "ChargingPayments.openSession(charger, deposit)")
    charging = settlement_of(platform).charging
    session, tx = await charging.open_session(
        signer, to_checksum_address(body.charger), body.deposit
    )
    return SessionTx(tx=tx_public(tx), session=await _public(platform, session))


@router.get("/sessions", response_model=SessionPage, summary="Charging sessions, newest first")
async def list_sessions(
    platform: PlatformDep, _key: ReaderDep, cursor: ListCursor = None, limit: ListLimit = 20
) -> SessionPage:
    charging = settlement_of(platform).charging

    async def exists(n: int) -> bool:
        return (await charging.session(n)).status is not SessionStatus.NONE

    ids, next_cursor = await newest_ids(exists, cursor, limit)
    return SessionPage(items=[await _public(platform, n) for n in ids], next_cursor=next_cursor)


@router.get("/sessions/{session}", response_model=SessionPublic, summary="A charging session")
async def get_session(session: SessionId, platform: PlatformDep, _key: ReaderDep) -> SessionPublic:
    return await _public(platform, session)


@router.post(
    "/sessions/{session}/close",
    response_model=SessionTx,
    summary="Close a session with the charger's stored, anchored reading",
    description="Builds the evidence from the reading's proof and sends "
    "`ChargingPayments.closeSession(session, ...)`. The contract accepts it only from the "
    "station (the charger's owner): give `account` (dev chain) or let the operator key sign "
    "when the platform operates the charger. 409 while the reading's batch is not anchored.",
)
async def close_session(
    session: SessionId, body: SessionClose, platform: PlatformDep, _key: OperatorDep
) -> SessionTx:
    signer = platform.chain.operator
    if body.account is not None:
        signer = dev_signer(platform, body.account, "ChargingPayments.closeSession(...)")
    evidence = await evidence_of(platform, body.reading_id)
    tx = await settlement_of(platform).charging.close_session(signer, session, evidence)
    return SessionTx(tx=tx_public(tx), session=await _public(platform, session))


@router.post(
    "/sessions/{session}/refund",
    response_model=SessionTx,
    summary="Refund a session the station never closed, after the timeout",
    description="`ChargingPayments.refundExpired(session)` (anyone may call it), sent with the "
    "operator key; the whole deposit becomes the vehicle's to withdraw.",
)
async def refund_session(session: SessionId, platform: PlatformDep, _key: OperatorDep) -> SessionTx:
    tx = await settlement_of(platform).charging.refund_expired(platform.chain.operator, session)
    return SessionTx(tx=tx_public(tx), session=await _public(platform, session))
