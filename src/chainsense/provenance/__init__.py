"""Provenance: Merkle batches of readings, their anchors on-chain, proofs and verification."""

from chainsense.provenance.merkle import MerkleTree, hash_pair, leaf_of, process_proof, verify_proof
from chainsense.provenance.proof import (
    FORMAT,
    AnchorRef,
    DomainRef,
    MetricRef,
    ProofDocument,
    ProofFormatError,
    SchemaRef,
)
from chainsense.provenance.verify import (
    OFFLINE_CHECKS,
    ONCHAIN_CHECKS,
    Check,
    Verdict,
    verify_offline,
    verify_onchain,
)

__all__ = [
    "FORMAT",
    "OFFLINE_CHECKS",
    "ONCHAIN_CHECKS",
    "AnchorRef",
    "Check",
    "DomainRef",
    "MerkleTree",
    "MetricRef",
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
