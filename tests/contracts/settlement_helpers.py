"""Helpers shared by the settlement contract tests (escrow, market, charging).

- :func:`deploy_any`: deploys a shipped artifact or a test-only one (``tests/contracts/artifacts``,
  built by ``contracts/build.mjs`` from ``contracts/test``);
- :func:`anchor_readings`: signs readings with their device keys, builds the MerkleTree of
  their struct hashes, anchors the root with the anchorer, and returns each reading's
  :class:`Evidence` (reading, signature, root, proof) as a claimant would submit it;
- block time control (:func:`now`, :func:`warp`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from chainsense.contracts import Artifact, load_artifact, load_artifact_file
from chainsense.provenance import MerkleTree
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.contracts.helpers import (
    Reading,
    reading_struct_hash,
    rpc,
    send,
    sign_reading,
)

__all__ = [
    "CHARGER",
    "COLDCHAIN",
    "METER",
    "Evidence",
    "anchor_readings",
    "deploy_any",
    "now",
    "warp",
]

TEST_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
COLDCHAIN = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1").id
METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1").id
CHARGER = BUILTIN_SCHEMAS.by_name("chainsense.charger.v1").id


def _artifact(name: str) -> Artifact:
    test_file = TEST_ARTIFACTS / f"{name}.json"
    return load_artifact_file(test_file) if test_file.exists() else load_artifact(name)


def deploy_any(w3: Web3, name: str, *args: Any, sender: str) -> tuple[Contract, TxReceipt]:
    """Deploy a shipped or a test-only artifact; return the contract and the receipt."""
    artifact = _artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=HexStr(artifact.bytecode))
    receipt = send(factory.constructor(*args), sender=sender)
    address = receipt["contractAddress"]
    assert address is not None
    return w3.eth.contract(address=address, abi=artifact.abi), receipt


@dataclass(frozen=True)
class Evidence:
    """What a claimant submits to prove a reading: the reading, its signature, an anchored root
    and the Merkle path to it."""

    reading: Reading
    signature: bytes
    root: bytes
    proof: list[bytes]
    struct_hash: bytes

    def args(self) -> tuple[Any, ...]:
        return (self.reading.as_abi(), self.signature, self.root, self.proof)


def anchor_readings(
    w3: Web3,
    *,
    registry: Contract,
    anchor: Contract | None,
    anchorer: str,
    signed: list[tuple[LocalAccount, Reading]],
    chain_id: int,
) -> list[Evidence]:
    """Sign each reading with its key, build the batch tree and anchor it (unless ``anchor`` is
    None: then the root is never anchored)."""
    hashes = [
        reading_struct_hash(r, chain_id=chain_id, verifying_contract=registry.address)
        for _, r in signed
    ]
    tree = MerkleTree(hashes)
    if anchor is not None:
        send(anchor.functions.anchor(tree.root, len(signed), keccak(tree.root)), sender=anchorer)
    return [
        Evidence(
            reading=r,
            signature=sign_reading(key, r, chain_id=chain_id, verifying_contract=registry.address),
            root=tree.root,
            proof=tree.proof(h),
            struct_hash=h,
        )
        for (key, r), h in zip(signed, hashes, strict=True)
    ]


def now(w3: Web3) -> int:
    """The latest block's time, seconds."""
    return int(w3.eth.get_block("latest")["timestamp"])


def warp(w3: Web3, timestamp: int) -> None:
    """Mine a block at ``timestamp`` (seconds), so the next transactions see at least that time."""
    rpc(w3, "evm_mine", timestamp)
