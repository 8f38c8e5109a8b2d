"""Client of ColdChainEscrow: open a shipment, report delivery (oracle), prove a breach, settle,
withdraw. Penalty rule: see contracts/interfaces/IColdChainEscrow.sol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from chainsense.chain.client import Signer
from chainsense.settlement._base import ContractClient, TxResult
from chainsense.settlement._base import result as _result
from chainsense.settlement.evidence import Evidence

__all__ = ["ColdChainEscrowClient", "Shipment", "ShipmentRule", "ShipmentStatus", "ShipmentTerms"]


class ShipmentStatus(IntEnum):
    NONE = 0
    OPEN = 1
    DELIVERED = 2
    SETTLED = 3


@dataclass(frozen=True)
class ShipmentTerms:
    """What a shipper chooses. Values are in the schema's fixed-point scale; times in ms."""

    carrier: str
    loggers: Sequence[str]
    schema: bytes
    min_value: int
    max_value: int
    window_start_ms: int
    window_end_ms: int
    payment: int
    penalty_per_breach: int
    max_penalty: int
    value_index: int = 0

    def as_abi(self) -> tuple[object, ...]:
        return (
            self.carrier, list(self.loggers), self.schema, self.value_index, self.min_value,
            self.max_value, self.window_start_ms, self.window_end_ms, self.payment,
            self.penalty_per_breach, self.max_penalty,
        )  # fmt: skip


@dataclass(frozen=True)
class Shipment:
    id: int
    shipper: str
    carrier: str
    status: ShipmentStatus
    reported_breaches: int
    proven_breaches: int
    claim_deadline: int
    evidence_root: bytes
    payment: int


@dataclass(frozen=True)
class ShipmentRule:
    """What counts as a breach of a shipment: a reading of one of ``loggers`` (device
    identities) in ``schema``, timestamped in ``[window_start_ms, window_end_ms]``, whose value
    at ``value_index`` lies outside ``[min_value, max_value]``."""

    loggers: tuple[str, ...]
    schema: bytes
    value_index: int
    min_value: int
    max_value: int
    window_start_ms: int
    window_end_ms: int

    def breached_by(self, values: tuple[int, ...]) -> bool:
        if self.value_index >= len(values):
            return False
        return not self.min_value <= values[self.value_index] <= self.max_value


class ColdChainEscrowClient(ContractClient):
    NAME = "ColdChainEscrow"

    async def open_shipment(self, signer: Signer, terms: ShipmentTerms) -> tuple[int, TxResult]:
        """Approve the payment and open the shipment; returns its id."""
        await self._approve(signer, terms.payment)
        receipt = await self._send(signer, self.contract.functions.openShipment(terms.as_abi()))
        return int(self._event(receipt, "ShipmentOpened")["id"]), _result(receipt)

    async def report_delivery(
        self, oracle: Signer, shipment: int, *, breaches: int, evidence_root: bytes
    ) -> TxResult:
        """Oracle: the compliance result (breaches == 0 means compliant) and its evidence root."""
        fn = self.contract.functions.reportDelivery(
            shipment, breaches == 0, breaches, evidence_root
        )
        return _result(await self._send(oracle, fn))

    async def claim_breach(self, signer: Signer, shipment: int, evidence: Evidence) -> TxResult:
        """Anyone: prove an out-of-range reading of one of the shipment's loggers."""
        fn = self.contract.functions.claimBreach(shipment, *evidence.call_args())
        return _result(await self._send(signer, fn))

    async def settle(self, signer: Signer, shipment: int) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.settle(shipment)))

    async def withdraw(self, signer: Signer) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.withdraw()))

    async def shipment(self, shipment: int) -> Shipment:
        raw = await self._call(self.contract.functions.shipmentOf(shipment))
        return Shipment(
            id=shipment,
            shipper=raw[0],
            carrier=raw[1],
            status=ShipmentStatus(raw[2]),
            reported_breaches=raw[4],
            proven_breaches=raw[5],
            claim_deadline=raw[10],
            evidence_root=bytes(raw[12]),
            payment=raw[13],
        )

    async def rule(self, shipment: int) -> ShipmentRule:
        """The shipment's loggers, schema, value index, range and window."""
        raw = await self._call(self.contract.functions.shipmentOf(shipment))
        loggers = await self._call(self.contract.functions.loggersOf(shipment))
        return ShipmentRule(
            loggers=tuple(str(a) for a in loggers),
            schema=bytes(raw[11]),
            value_index=int(raw[3]),
            min_value=int(raw[6]),
            max_value=int(raw[7]),
            window_start_ms=int(raw[8]),
            window_end_ms=int(raw[9]),
        )

    async def penalty(self, shipment: int) -> tuple[int, int]:
        """(breaches counted, penalty) if the shipment settled now."""
        breaches, penalty = await self._call(self.contract.functions.penaltyOf(shipment))
        return int(breaches), int(penalty)

    async def owed(self, account: str) -> int:
        return int(await self._call(self.contract.functions.owed(account)))
