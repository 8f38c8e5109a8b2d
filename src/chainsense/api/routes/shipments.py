"""/v1/shipments: cold-chain escrow (ColdChainEscrow) — open, status, delivery report, breach
claims by stored reading id, settlement. Who signs what: see ``_settlement``."""

from __future__ import annotations

from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field, model_validator

from chainsense.ai.monitor import ShipmentLimit
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
from chainsense.settlement import ShipmentStatus, ShipmentTerms
from chainsense.settlement.oracle import assess
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

__all__ = ["router"]

router = APIRouter(prefix="/shipments", tags=["settlement: shipments"], responses=PROBLEMS)

ShipmentId = Annotated[int, Path(ge=1, lt=2**63, description="The shipment id")]
Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")]


class ShipmentOpen(InputModel):
    """A shipper's terms. Values are in the schema's fixed-point scale (chainsense.coldchain.v1:
    centi-degrees Celsius at index 0); the window is in device time, ms; amounts in token
    units."""

    account: DevAccount
    carrier: Address
    loggers: list[Address] = Field(min_length=1, max_length=8)
    schema_name: str = Field(
        default="chainsense.coldchain.v1", examples=["chainsense.coldchain.v1"]
    )
    value_index: int = Field(default=0, ge=0, lt=256)
    min_value: int = Field(ge=-(2**63), lt=2**63, examples=[200])
    max_value: int = Field(ge=-(2**63), lt=2**63, examples=[800])
    window_start_ms: int = Field(ge=0, lt=2**63)
    window_end_ms: int = Field(ge=0, lt=2**63)
    payment: int = Field(gt=0, le=MAX_AMOUNT, examples=[500_000_000])
    penalty_per_breach: int = Field(ge=0, le=MAX_AMOUNT, examples=[50_000_000])
    max_penalty: int = Field(ge=0, le=MAX_AMOUNT, examples=[200_000_000])

    @model_validator(mode="after")
    def _ordered(self) -> ShipmentOpen:
        if self.min_value > self.max_value or self.window_start_ms >= self.window_end_ms:
            raise ValueError("need min_value <= max_value and window_start_ms < window_end_ms")
        return self


class ShipmentOpened(BaseModel):
    id: int
    shipper: str
    tx: TxPublic


class ShipmentPublic(BaseModel):
    id: int
    shipper: str
    carrier: str
    status: str = Field(examples=["open"], description="open, delivered or settled")
    reported_breaches: int = Field(description="Breaches in the oracle's delivery report")
    proven_breaches: int = Field(description="Breaches proven on-chain with anchored readings")
    claim_deadline: int = Field(description="Block time until which breaches can be proven")
    evidence_root: str
    payment: int
    breaches_counted: int = Field(description="max(reported, proven)")
    penalty: int = Field(description="What the shipper gets back if it settled now")


class ShipmentPage(BaseModel):
    items: list[ShipmentPublic]
    next_cursor: int | None = Field(description="Pass as cursor for older shipments")


class DeliveryReport(InputModel):
    """Empty: the platform computes the result from its stored readings (see `GET
    /v1/shipments/{id}/compliance`). Both fields: the operator's own result."""

    breaches: int | None = Field(default=None, ge=0, lt=2**32, description="0 = compliant")
    evidence_root: Hex32 | None = Field(
        default=None, description="Root of the batch the compliance result rests on"
    )

    @model_validator(mode="after")
    def _both(self) -> DeliveryReport:
        if (self.breaches is None) != (self.evidence_root is None):
            raise ValueError("give both breaches and evidence_root, or neither")
        return self


class CompliancePublic(BaseModel):
    """The oracle's result computed from the stored readings."""

    shipment: int
    compliant: bool
    readings: int = Field(description="Readings of the loggers in the schema and window")
    breaches: int
    breach_reading_ids: list[int] = Field(description="Out-of-range readings, oldest first")
    evidence_reading_id: int | None = Field(
        description="The reading whose anchored batch root is cited (first breach, else last)"
    )
    evidence_root: str | None = Field(description="That root (null: no readings)")


class ShipmentTx(BaseModel):
    tx: TxPublic
    shipment: ShipmentPublic


class DeliveryReported(ShipmentTx):
    compliance: CompliancePublic | None = Field(
        description="The computed result that was reported (null: the operator's own)"
    )


async def _compliance(platform: PlatformDep, shipment: int) -> CompliancePublic:
    escrow = settlement_of(platform).escrow
    if (await escrow.shipment(shipment)).status is ShipmentStatus.NONE:
        raise HTTPException(404, f"no shipment {shipment}")
    found = await assess(platform.store, escrow, shipment)
    root = None
    if found.evidence_reading is not None:
        root = "0x" + (await evidence_of(platform, found.evidence_reading)).root.hex()
    return CompliancePublic(
        shipment=shipment,
        compliant=found.compliant,
        readings=found.readings,
        breaches=len(found.breaches),
        breach_reading_ids=list(found.breaches),
        evidence_reading_id=found.evidence_reading,
        evidence_root=root,
    )


async def _public(platform: PlatformDep, shipment: int) -> ShipmentPublic:
    escrow = settlement_of(platform).escrow
    state = await escrow.shipment(shipment)
    if state.status is ShipmentStatus.NONE:
        raise HTTPException(404, f"no shipment {shipment}")
    breaches, penalty = await escrow.penalty(shipment)
    return ShipmentPublic(
        id=shipment,
        shipper=state.shipper,
        carrier=state.carrier,
        status=state.status.name.lower(),
        reported_breaches=state.reported_breaches,
        proven_breaches=state.proven_breaches,
        claim_deadline=state.claim_deadline,
        evidence_root="0x" + state.evidence_root.hex(),
        payment=state.payment,
        breaches_counted=breaches,
        penalty=penalty,
    )


@router.post(
    "",
    status_code=201,
    response_model=ShipmentOpened,
    summary="Open a shipment with the payment deposited (dev chain only)",
    description="Signs `ColdChainEscrow.openShipment(terms)` (after the token `approve`) with "
    "the dev account `account` as the shipper. Dev-chain convenience: elsewhere shippers call "
    "`ColdChainEscrow.openShipment` from their own wallets, and this route answers 400.",
)
async def open_shipment(
    body: ShipmentOpen, platform: PlatformDep, _key: OperatorDep
) -> ShipmentOpened:
    signer = dev_signer(platform, body.account, "ColdChainEscrow.openShipment(terms)")
    terms = ShipmentTerms(
        carrier=to_checksum_address(body.carrier),
        loggers=[to_checksum_address(a) for a in body.loggers],
        schema=BUILTIN_SCHEMAS.by_name(body.schema_name).id,
        value_index=body.value_index,
        min_value=body.min_value,
        max_value=body.max_value,
        window_start_ms=body.window_start_ms,
        window_end_ms=body.window_end_ms,
        payment=body.payment,
        penalty_per_breach=body.penalty_per_breach,
        max_penalty=body.max_penalty,
    )
    shipment, tx = await settlement_of(platform).escrow.open_shipment(signer, terms)
    if platform.ai is not None:
        # the shipment's range is a hard limit on its loggers' readings during its window
        await platform.ai.watch_shipment(
            terms.loggers,
            ShipmentLimit(
                shipment=shipment, schema=terms.schema, value_index=terms.value_index,
                min_value=terms.min_value, max_value=terms.max_value,
                window_start_ms=terms.window_start_ms, window_end_ms=terms.window_end_ms,
            ),
        )  # fmt: skip
    return ShipmentOpened(id=shipment, shipper=signer.address, tx=tx_public(tx))


@router.get("", response_model=ShipmentPage, summary="Shipments, newest first")
async def list_shipments(
    platform: PlatformDep, _key: ReaderDep, cursor: ListCursor = None, limit: ListLimit = 20
) -> ShipmentPage:
    escrow = settlement_of(platform).escrow

    async def exists(n: int) -> bool:
        return (await escrow.shipment(n)).status is not ShipmentStatus.NONE

    ids, next_cursor = await newest_ids(exists, cursor, limit)
    return ShipmentPage(items=[await _public(platform, n) for n in ids], next_cursor=next_cursor)


@router.get("/{shipment}", response_model=ShipmentPublic, summary="A shipment's state")
async def get_shipment(
    shipment: ShipmentId, platform: PlatformDep, _key: ReaderDep
) -> ShipmentPublic:
    return await _public(platform, shipment)


@router.get(
    "/{shipment}/compliance",
    response_model=CompliancePublic,
    summary="The oracle's compliance result, computed from the stored readings",
    description="Counts the readings of the shipment's loggers (every key of each device) in its "
    "schema and window whose value lies outside the range, as `claimBreach` judges one reading. "
    "The evidence root is the anchored batch root of the first breach (else of the last "
    "reading); 409 with `Retry-After` while that reading's batch is not anchored yet.",
)
async def get_compliance(
    shipment: ShipmentId, platform: PlatformDep, _key: ReaderDep
) -> CompliancePublic:
    return await _compliance(platform, shipment)


@router.post(
    "/{shipment}/delivery",
    response_model=DeliveryReported,
    summary="Oracle: report delivery (compliance result and evidence root)",
    description="Signed by the platform's operator key, which holds the escrow's ORACLE_ROLE "
    "(`ColdChainEscrow.reportDelivery`). Allowed after the shipment window, before the report "
    "timeout. With an empty body the platform reports what `GET .../compliance` computes; "
    "`breaches` + `evidence_root` report the operator's own result instead. Either way a "
    "report can add breaches but cannot hide one: anyone can still prove it on-chain.",
)
async def report_delivery(
    shipment: ShipmentId,
    platform: PlatformDep,
    _key: OperatorDep,
    body: DeliveryReport | None = None,
) -> DeliveryReported:
    computed = None
    if body is None or body.breaches is None or body.evidence_root is None:
        computed = await _compliance(platform, shipment)
        if computed.evidence_root is None:
            raise HTTPException(
                409, f"no readings of shipment {shipment}'s loggers in its window: nothing to "
                "cite; give breaches and evidence_root to report anyway",
            )  # fmt: skip
        breaches, root = computed.breaches, computed.evidence_root
    else:
        breaches, root = body.breaches, body.evidence_root
    tx = await settlement_of(platform).escrow.report_delivery(
        platform.chain.operator, shipment, breaches=breaches, evidence_root=bytes.fromhex(root[2:])
    )
    return DeliveryReported(
        tx=tx_public(tx), shipment=await _public(platform, shipment), compliance=computed
    )


@router.post(
    "/{shipment}/claims",
    response_model=ShipmentTx,
    summary="Prove a breach on-chain from a stored, anchored reading",
    description="Builds the evidence (reading, signature, anchored root, Merkle path) from the "
    "reading's proof and submits `ColdChainEscrow.claimBreach` with the operator key on behalf "
    "of the caller. Anyone may prove a breach: the same evidence, from `GET "
    "/v1/readings/{id}/proof`, can be submitted from any wallet without the platform. 409 "
    "while the reading's batch is not anchored (`Retry-After`); 422 when the contract rejects "
    "the evidence (in range, another device, outside the window, already claimed...).",
)
async def claim_breach(
    shipment: ShipmentId, body: ReadingRef, platform: PlatformDep, _key: OperatorDep
) -> ShipmentTx:
    evidence = await evidence_of(platform, body.reading_id)
    tx = await settlement_of(platform).escrow.claim_breach(
        platform.chain.operator, shipment, evidence
    )
    return ShipmentTx(tx=tx_public(tx), shipment=await _public(platform, shipment))


@router.post(
    "/{shipment}/settle",
    response_model=ShipmentTx,
    summary="Settle a shipment after its challenge window",
    description="`ColdChainEscrow.settle` (anyone may call it), sent with the operator key. The "
    "carrier's and the shipper's shares become withdrawable (`POST "
    "/v1/settlement/withdrawals` on the dev chain, `ColdChainEscrow.withdraw` elsewhere).",
)
async def settle_shipment(
    shipment: ShipmentId, platform: PlatformDep, _key: OperatorDep
) -> ShipmentTx:
    tx = await settlement_of(platform).escrow.settle(platform.chain.operator, shipment)
    return ShipmentTx(tx=tx_public(tx), shipment=await _public(platform, shipment))
