"""/v1/settlement: balances an account holds or is owed in the settlement contracts, and
withdrawals (pull payments) on the dev chain."""

from __future__ import annotations

import enum
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.inputs import InputModel
from chainsense.api.routes._settlement import (
    PROBLEMS,
    DevAccount,
    TxPublic,
    dev_signer,
    settlement_of,
    tx_public,
)

__all__ = ["router"]

router = APIRouter(prefix="/settlement", tags=["settlement"], responses=PROBLEMS)

AddressPath = Annotated[str, PathParam(pattern=r"^0x[0-9a-fA-F]{40}$")]


class BalancesPublic(BaseModel):
    account: str
    token: str = Field(description="The payment token's address")
    wallet: int = Field(description="Token units in the account's wallet")
    escrow_owed: int = Field(description="Withdrawable from ColdChainEscrow")
    charging_owed: int = Field(description="Withdrawable from ChargingPayments")
    market_balance: int = Field(description="Free balance in EnergyMarket (withdrawable)")


class Contract(enum.StrEnum):
    escrow = "escrow"
    market = "market"
    charging = "charging"


class WithdrawalIn(InputModel):
    account: DevAccount
    contract: Contract


class WithdrawalDone(BaseModel):
    tx: TxPublic
    balances: BalancesPublic


async def _balances(platform: PlatformDep, account: str) -> BalancesPublic:
    s = settlement_of(platform)
    return BalancesPublic(
        account=account,
        token=platform.chain.deployment.payment_token,
        wallet=await s.escrow.token_balance(account),
        escrow_owed=await s.escrow.owed(account),
        charging_owed=await s.charging.owed(account),
        market_balance=await s.market.balance_of(account),
    )


@router.get(
    "/balances/{account}",
    response_model=BalancesPublic,
    summary="What an account holds and is owed in the settlement contracts",
)
async def get_balances(
    account: AddressPath, platform: PlatformDep, _key: ReaderDep
) -> BalancesPublic:
    return await _balances(platform, to_checksum_address(account))


@router.post(
    "/withdrawals",
    response_model=WithdrawalDone,
    summary="Withdraw what a contract owes a dev account (dev chain only)",
    description="Signs `withdraw()` on ColdChainEscrow, EnergyMarket or ChargingPayments with "
    "the dev account (pull payment). Dev-chain convenience; elsewhere the account calls "
    "`withdraw()` itself.",
)
async def withdraw(body: WithdrawalIn, platform: PlatformDep, _key: OperatorDep) -> WithdrawalDone:
    signer = dev_signer(platform, body.account, f"withdraw() on the {body.contract} contract")
    s = settlement_of(platform)
    if body.contract is Contract.escrow:
        tx = await s.escrow.withdraw(signer)
    elif body.contract is Contract.market:
        tx = await s.market.withdraw(signer)
    else:
        tx = await s.charging.withdraw(signer)
    return WithdrawalDone(tx=tx_public(tx), balances=await _balances(platform, signer.address))
