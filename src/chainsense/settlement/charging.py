"""Client of ChargingPayments: price a charger (station), open a session (vehicle), close it with
the charger's anchored reading (station), refund it after the timeout, withdraw."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from chainsense.chain.client import Signer
from chainsense.settlement._base import ContractClient, TxResult
from chainsense.settlement._base import result as _result
from chainsense.settlement.evidence import Evidence

__all__ = ["ChargingPaymentsClient", "ChargingSession", "SessionStatus"]


class SessionStatus(IntEnum):
    NONE = 0
    OPEN = 1
    CLOSED = 2
    REFUNDED = 3


@dataclass(frozen=True)
class ChargingSession:
    id: int
    vehicle: str
    charger: str
    station: str
    status: SessionStatus
    opened_at: int
    energy_wh: int
    price_per_wh: int
    deposit: int
    amount_due: int


class ChargingPaymentsClient(ContractClient):
    NAME = "ChargingPayments"

    async def set_price(self, station: Signer, charger: str, price_per_wh: int) -> TxResult:
        fn = self.contract.functions.setPrice(charger, price_per_wh)
        return _result(await self._send(station, fn))

    async def open_session(
        self, vehicle: Signer, charger: str, deposit: int
    ) -> tuple[int, TxResult]:
        await self._approve(vehicle, deposit)
        receipt = await self._send(vehicle, self.contract.functions.openSession(charger, deposit))
        return int(self._event(receipt, "SessionOpened")["id"]), _result(receipt)

    async def close_session(self, station: Signer, session: int, evidence: Evidence) -> TxResult:
        fn = self.contract.functions.closeSession(session, *evidence.call_args())
        return _result(await self._send(station, fn))

    async def refund_expired(self, signer: Signer, session: int) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.refundExpired(session)))

    async def withdraw(self, signer: Signer) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.withdraw()))

    async def session(self, session: int) -> ChargingSession:
        raw = await self._call(self.contract.functions.sessionOf(session))
        return ChargingSession(session, raw[0], raw[1], raw[2], SessionStatus(raw[3]), *raw[4:])

    async def owed(self, account: str) -> int:
        return int(await self._call(self.contract.functions.owed(account)))
