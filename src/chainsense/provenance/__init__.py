"""Provenance: Merkle batches of readings, their anchors on-chain, proofs and verification.

Names are imported on first use, so ``chainsense verify`` (which needs only the proof format and
the offline checks) does not load web3 or the store.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FORMAT",
    "OFFLINE_CHECKS",
    "ONCHAIN_CHECKS",
    "AnchorRef",
    "Check",
    "DomainRef",
    "MerkleTree",
    "MetricRef",
    "Pins",
    "ProofDocument",
    "ProofFormatError",
    "SchemaRef",
    "Verdict",
    "hash_pair",
    "leaf_of",
    "process_proof",
    "verify_offline",
    "verify_onchain",
    "verify_proof",
]

_WHERE = {
    "MerkleTree": "merkle",
    "hash_pair": "merkle",
    "leaf_of": "merkle",
    "process_proof": "merkle",
    "verify_proof": "merkle",
    "FORMAT": "proof",
    "AnchorRef": "proof",
    "DomainRef": "proof",
    "MetricRef": "proof",
    "ProofDocument": "proof",
    "ProofFormatError": "proof",
    "SchemaRef": "proof",
    "Pins": "pins",
    "OFFLINE_CHECKS": "verify",
    "ONCHAIN_CHECKS": "verify",
    "Check": "verify",
    "Verdict": "verify",
    "verify_offline": "verify",
    "verify_onchain": "verify_rpc",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
