"""What the settlement routers share: the clients, who signs, evidence from a stored reading,
and the response models of a mined transaction.

Who signs. The platform holds only its role keys. Routes for what the platform itself does (the
oracle's delivery report, submitting a breach claim or a delivery proof built from a stored,
anchored reading, clearing an interval, settling, refunding an expired session) are signed by
its operator key and need an operator API key. Actions that need a user's own wallet (a
shipper's deposit, market deposits and orders, a vehicle opening a charging session, a station
pricing its charger, withdrawals) are offered as **dev-chain conveniences** only: the body names
an Anvil dev account by index (3-9; 0-2 are the platform's roles) and the route signs with its
public key. On any other chain these routes answer 400; real users call the contract function
named in the route's description from their own wallets (addresses: ``GET /v1/chain``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import HTTPException
from pydantic import BaseModel, Field

from chainsense.api.errors import PROBLEM_JSON
from chainsense.api.inputs import InputModel
from chainsense.chain.client import Signer
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.platform import Platform
from chainsense.provenance.export import Pending, ReadingNotFoundError
from chainsense.settlement import Evidence, Settlement, TxResult, open_settlement

__all__ = [
    "MAX_AMOUNT",
    "PROBLEMS",
    "Address",
    "DevAccount",
    "ReadingRef",
    "TxPublic",
    "dev_only",
    "dev_signer",
    "evidence_of",
    "settlement_of",
    "tx_public",
]

FIRST_USER_ACCOUNT = 3
#: Largest token amount or price a route accepts (a round bound that JSON Schema states exactly).
MAX_AMOUNT = 10**36

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x" + "ab" * 20])]
DevAccount = Annotated[
    int,
    Field(
        ge=FIRST_USER_ACCOUNT,
        lt=len(ANVIL_DEV_KEYS),
        description="Dev chain only: the Anvil dev account (3-9) that signs for the user.",
        examples=[5],
    ),
]

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: _PROBLEM | {"description": "A dev-chain convenience called on another chain"},
    402: _PROBLEM | {"description": "Insufficient funds, allowance or owed balance"},
    403: _PROBLEM | {"description": "The signer may not do this"},
    404: _PROBLEM | {"description": "No such shipment, session, order or reading"},
    409: _PROBLEM
    | {"description": "Too early or too late, wrong state, or the reading's proof is pending"},
    422: _PROBLEM | {"description": "Invalid body, or the evidence does not prove the claim"},
}


class TxPublic(BaseModel):
    """A mined transaction."""

    tx_hash: str = Field(examples=["0x" + "12" * 32])
    gas_used: int


class ReadingRef(InputModel):
    reading_id: int = Field(
        ge=1, lt=2**63, description="A stored reading whose batch is anchored (its proof exists)"
    )


def tx_public(tx: TxResult) -> TxPublic:
    return TxPublic(tx_hash=tx.tx_hash, gas_used=tx.gas_used)


def settlement_of(platform: Platform) -> Settlement:
    """The settlement clients of the platform's deployment."""
    return open_settlement(platform.chain.client, platform.chain.deployment)


def dev_only(platform: Platform, call: str) -> None:
    """400 unless the platform runs its own dev chain; ``call`` names the contract function a
    real user calls from their own wallet instead."""
    if platform.chain.devchain is None:
        raise HTTPException(
            400,
            "this route signs with an Anvil dev account and exists on the dev chain only; on "
            f"this chain call {call} from your own wallet (contract addresses: GET /v1/chain)",
        )


def dev_signer(platform: Platform, account: int, call: str) -> Signer:
    """A signer for dev account ``account`` (dev chain only, see :func:`dev_only`)."""
    dev_only(platform, call)
    return Signer(platform.chain.client, ANVIL_DEV_KEYS[account])


async def evidence_of(platform: Platform, reading_id: int) -> Evidence:
    """The on-chain evidence of a stored reading: 404 if unknown, 409 (with ``Retry-After``)
    while its batch is not anchored."""
    try:
        found = await platform.proofs.proof(reading_id)
    except ReadingNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    if isinstance(found, Pending):
        retry = max(1, math.ceil(found.expected_wait_seconds))
        raise HTTPException(
            409,
            f"the proof of reading {reading_id} is pending ({found.state}): {found.detail}",
            headers={"Retry-After": str(retry)},
        )
    return Evidence(found.reading, found.signature, found.root, tuple(found.proof))
