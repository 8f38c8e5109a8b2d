"""What the settlement clients share: sending through a Signer with reverts mapped to
settlement errors, token approvals, and event lookup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction
from web3.exceptions import MismatchedABI
from web3.types import TxReceipt

from chainsense.chain.client import ChainClient, Signer
from chainsense.errors import ChainSenseError, TransactionRevertedError
from chainsense.settlement.errors import from_revert

__all__ = ["ContractClient", "TxResult", "result"]


@dataclass(frozen=True)
class TxResult:
    """A mined settlement transaction."""

    tx_hash: str
    gas_used: int


def result(receipt: TxReceipt) -> TxResult:
    return TxResult(
        tx_hash=receipt["transactionHash"].to_0x_hex(), gas_used=int(receipt["gasUsed"])
    )


class ContractClient:
    """A typed wrapper over one deployed settlement contract paid in ``token``."""

    NAME = ""

    def __init__(self, client: ChainClient, address: str, token: str) -> None:
        self.client = client
        self.contract: AsyncContract = client.contract(self.NAME, address)
        self.token: AsyncContract = client.contract("TestStablecoin", token)  # ERC-20 ABI

    @property
    def address(self) -> str:
        return str(self.contract.address)

    async def _send(self, signer: Signer, fn: AsyncContractFunction) -> TxReceipt:
        try:
            return await signer.transact(fn)
        except TransactionRevertedError as exc:
            raise from_revert(exc) from exc

    async def _call(self, fn: AsyncContractFunction) -> Any:
        try:
            return await self.client.call(fn)
        except TransactionRevertedError as exc:
            raise from_revert(exc) from exc

    async def _approve(self, signer: Signer, amount: int) -> None:
        allowance = await self.client.call(
            self.token.functions.allowance(signer.address, self.address)
        )
        if allowance < amount:
            await self._send(signer, self.token.functions.approve(self.address, amount))

    def _event(self, receipt: TxReceipt, name: str) -> dict[str, Any]:
        """The args of the first ``name`` event this contract emitted in ``receipt``."""
        for log in receipt["logs"]:
            if log["address"] != self.contract.address:
                continue
            try:
                decoded = getattr(self.contract.events, name)().process_log(log)
            except MismatchedABI:  # another event of this contract
                continue
            return dict(decoded["args"])
        raise ChainSenseError(f"{self.NAME} emitted no {name} in {receipt['transactionHash']!r}")

    async def token_balance(self, account: str) -> int:
        """The account's balance of the payment token."""
        return int(await self.client.call(self.token.functions.balanceOf(account)))
