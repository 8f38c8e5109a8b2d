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

__all__ = [
    "FORMAT",
    "AnchorRef",
    "DomainRef",
    "MerkleTree",
    "MetricRef",
    "ProofDocument",
    "ProofFormatError",
    "SchemaRef",
    "hash_pair",
    "leaf_of",
    "process_proof",
    "verify_proof",
]
