"""OpenZeppelin StandardMerkleTree over ``bytes32`` values, with a native keccak.

The layout is exactly ``StandardMerkleTree.of(values, ["bytes32"])`` from
``@openzeppelin/merkle-tree``: each value's leaf is ``keccak256(keccak256(abi.encode(value)))``,
the leaves are sorted by hash and stored right to left at the end of a flat array, node ``i`` has
children ``2i+1`` and ``2i+2``, and inner nodes hash their children as a sorted pair. So roots and
proofs are byte-identical to the npm package, and OpenZeppelin's ``MerkleProof.verify`` accepts
them on-chain.

For readings, the value is the reading's EIP-712 ``hashStruct``, so a leaf commits to the whole
signed reading.

>>> tree = MerkleTree([bytes(32), b"\\x01" * 32])
>>> proof = tree.proof(bytes(32))
>>> verify_proof(proof, tree.root, leaf_of(bytes(32)))
True
>>> verify_proof(proof, tree.root, leaf_of(b"\\x02" * 32))
False
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chainsense.identity._keccak import keccak256

__all__ = ["MerkleTree", "hash_pair", "leaf_of", "process_proof", "verify_proof"]


def leaf_of(value: bytes) -> bytes:
    """The StandardMerkleTree leaf of one ``bytes32`` value (``abi.encode`` of a bytes32 is the
    value itself)."""
    if len(value) != 32:
        raise ValueError(f"a leaf value is 32 bytes, got {len(value)}")
    return keccak256(keccak256(value))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative node hash: keccak256 of the sorted pair."""
    return keccak256(a + b if a < b else b + a)


def process_proof(
    proof: Iterable[bytes], leaf: bytes, known: dict[bytes, bytes] | None = None
) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (``MerkleProof.processProof``).

    ``known`` remembers node hashes between calls, keyed by the 64 hashed bytes themselves:
    the proofs of one tree share their upper nodes (the node at height h is on 2^h paths), so
    checking every proof of a tree hashes about one pair per proof instead of one per step. A
    hit is the keccak of exactly those 64 bytes, so the result is the same."""
    node = leaf
    if known is None:
        for sibling in proof:
            node = keccak256(node + sibling if node < sibling else sibling + node)
        return node
    for sibling in proof:
        pair = node + sibling if node < sibling else sibling + node
        found = known.get(pair)
        if found is None:
            found = known[pair] = keccak256(pair)
        node = found
    return node


def verify_proof(proof: Iterable[bytes], root: bytes, leaf: bytes) -> bool:
    """``MerkleProof.verify``: does ``proof`` lead from ``leaf`` to ``root``?"""
    return process_proof(proof, leaf) == root


class MerkleTree:
    """A built tree. Building costs 2n keccaks for the leaves, an O(n log n) sort, and n-1
    keccaks for the inner nodes; the leaf index for :meth:`proof` is built on first use."""

    __slots__ = ("_position", "_size", "_tree")

    def __init__(self, values: Sequence[bytes]) -> None:
        if not values:
            raise ValueError("a Merkle tree needs at least one value")
        for v in values:
            if len(v) != 32:
                raise ValueError(f"a leaf value is 32 bytes, got {len(v)}")
        k = keccak256
        leaves = sorted([k(k(v)) for v in values])  # leaf_of, inlined: 100k calls add up
        size = 2 * len(leaves) - 1
        tree: list[bytes] = [b""] * size
        tree[size - len(leaves) :] = leaves[::-1]
        for i in range(size - 1 - len(leaves), -1, -1):
            left, right = tree[2 * i + 1], tree[2 * i + 2]
            tree[i] = k(left + right if left < right else right + left)
        self._tree = tree
        self._size = len(leaves)
        self._position: dict[bytes, int] | None = None  # built on the first proof() call

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def __len__(self) -> int:
        return self._size

    def proof(self, value: bytes) -> list[bytes]:
        """The sibling path from ``value``'s leaf to the root (KeyError if it is not a leaf)."""
        if self._position is None:
            tree, size = self._tree, len(self._tree)
            self._position = {tree[j]: j for j in range(size - self._size, size)}
        index = self._position[leaf_of(value)]
        path: list[bytes] = []
        while index > 0:
            path.append(self._tree[index + 1 if index % 2 == 1 else index - 1])
            index = (index - 1) // 2
        return path
