"""Evidence a settlement contract accepts: a reading, its signature, an anchored Merkle root and
the path from the reading's leaf to it (the on-chain half of a chainsense.proof.v1 document)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainsense.identity import Reading
from chainsense.identity.eip712 import struct_hash
from chainsense.provenance import MerkleTree

__all__ = ["Evidence", "batch_evidence", "reading_abi"]


def reading_abi(reading: Reading) -> tuple[str, int, int, bytes, list[int]]:
    """The ``IDeviceRegistry.Reading`` struct as a contract call argument."""
    return (reading.device, reading.seq, reading.timestamp, reading.schema, list(reading.values))


@dataclass(frozen=True)
class Evidence:
    """One reading proven against a root."""

    reading: Reading
    signature: bytes
    root: bytes
    proof: tuple[bytes, ...]

    @property
    def struct_hash(self) -> bytes:
        return struct_hash(self.reading)

    def call_args(self) -> tuple[Any, ...]:
        """``(reading, signature, root, proof)`` as the contracts take them."""
        return (reading_abi(self.reading), self.signature, self.root, list(self.proof))


def batch_evidence(signed: Sequence[tuple[Reading, bytes]]) -> tuple[bytes, list[Evidence]]:
    """Build the batch tree of ``signed`` readings (the anchorer's StandardMerkleTree of struct
    hashes) and return its root and each reading's evidence, in input order."""
    hashes = [struct_hash(reading) for reading, _ in signed]
    tree = MerkleTree(hashes)
    return tree.root, [
        Evidence(reading, signature, tree.root, tuple(tree.proof(h)))
        for (reading, signature), h in zip(signed, hashes, strict=True)
    ]
