"""Client of EnergyMarket: deposit, orders, clearing, delivery proofs, bid finalization,
withdrawal. Clearing and shortfall rules: see contracts/interfaces/IEnergyMarket.sol."""

from __future__ import annotations

from dataclasses import dataclass

from chainsense.chain.client import Signer
from chainsense.settlement._base import ContractClient, TxResult
from chainsense.settlement._base import result as _result
from chainsense.settlement.evidence import Evidence

__all__ = ["EnergyMarketClient", "IntervalState", "Order"]


@dataclass(frozen=True)
class IntervalState:
    interval: int
    cleared: bool
    price: int
    sold_wh: int
    delivered_wh: int


@dataclass(frozen=True)
class Order:
    id: int
    participant: str
    side: str  # "bid" or "ask"
    interval: int
    meter: str | None
    quantity_wh: int
    price_per_wh: int


class EnergyMarketClient(ContractClient):
    NAME = "EnergyMarket"

    async def interval_seconds(self) -> int:
        return int(await self._call(self.contract.functions.intervalSeconds()))

    async def deposit(self, signer: Signer, amount: int) -> TxResult:
        await self._approve(signer, amount)
        return _result(await self._send(signer, self.contract.functions.deposit(amount)))

    async def set_agent(self, signer: Signer, agent: str, allowed: bool = True) -> TxResult:
        """Opt in (or out) of orders placed by ``agent``, e.g. the forecasting service."""
        return _result(await self._send(signer, self.contract.functions.setAgent(agent, allowed)))

    async def place_bid(
        self, signer: Signer, *, interval: int, quantity_wh: int, price_per_wh: int,
        participant: str | None = None,
    ) -> tuple[int, TxResult]:  # fmt: skip
        fn = self.contract.functions.placeBid(
            participant or signer.address, interval, quantity_wh, price_per_wh
        )
        receipt = await self._send(signer, fn)
        return int(self._event(receipt, "OrderPlaced")["id"]), _result(receipt)

    async def place_ask(
        self, signer: Signer, *, interval: int, meter: str, quantity_wh: int, price_per_wh: int,
        participant: str | None = None,
    ) -> tuple[int, TxResult]:  # fmt: skip
        fn = self.contract.functions.placeAsk(
            participant or signer.address, interval, meter, quantity_wh, price_per_wh
        )
        receipt = await self._send(signer, fn)
        return int(self._event(receipt, "OrderPlaced")["id"]), _result(receipt)

    async def clear(self, signer: Signer, interval: int) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.clear(interval)))

    async def prove_delivery(self, signer: Signer, ask: int, evidence: Evidence) -> TxResult:
        fn = self.contract.functions.proveDelivery(ask, *evidence.call_args())
        return _result(await self._send(signer, fn))

    async def finalize_bid(self, signer: Signer, bid: int) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.finalizeBid(bid)))

    async def withdraw(self, signer: Signer) -> TxResult:
        return _result(await self._send(signer, self.contract.functions.withdraw()))

    async def interval(self, interval: int) -> IntervalState:
        raw = await self._call(self.contract.functions.intervalOf(interval))
        return IntervalState(interval, bool(raw[0]), raw[1], raw[2], raw[3])

    async def balance_of(self, account: str) -> int:
        return int(await self._call(self.contract.functions.balanceOf(account)))

    async def is_agent(self, participant: str, agent: str) -> bool:
        """Whether ``participant`` allowed ``agent`` to place its orders (``setAgent``)."""
        return bool(await self._call(self.contract.functions.isAgent(participant, agent)))

    async def order(self, order: int) -> Order:
        raw = await self._call(self.contract.functions.orderOf(order))
        side = "bid" if raw[1] == 0 else "ask"
        meter = str(raw[4]) if side == "ask" else None
        return Order(order, str(raw[0]), side, int(raw[3]), meter, int(raw[5]), int(raw[8]))

    async def orders(self, interval: int) -> list[Order]:
        """Every order placed for ``interval``, bids first, in the order they were placed."""
        bids, asks = await self._call(self.contract.functions.ordersOf(interval))
        return [await self.order(int(i)) for i in (*bids, *asks)]
