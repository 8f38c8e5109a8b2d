"""MerkleTree against the reference implementations, over random trees of 1 to 2000 leaves:

- roots and every proof are byte-identical to npm ``@openzeppelin/merkle-tree`` (one node process
  builds every tree);
- OpenZeppelin ``MerkleProof`` accepts every proof on-chain: each root is anchored in a real
  ReadingAnchor on Anvil and ``ReadingAnchor.verify`` is called for every leaf of every tree
  (JSON-RPC batches of eth_calls), and refuses a sample of tampered ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from eth_abi.abi import encode as abi_encode
from web3.types import RPCEndpoint

from chainsense.identity import keccak256
from chainsense.provenance import MerkleTree, hash_pair, leaf_of, process_proof, verify_proof
from tests.contracts.helpers import oz_merkle_trees, standard_leaf
from tests.provenance.support import Chain

SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 256, 257, 1023, 1999, 2000]
RANDOM_SIZES = random.Random(4).sample(range(1, 2001), 9)
BATCH = 500  # eth_calls per JSON-RPC batch


def _trees() -> list[list[bytes]]:
    rng = random.Random(20260)
    return [[rng.randbytes(32) for _ in range(n)] for n in [*SIZES, *RANDOM_SIZES]]


TREES = _trees()


def test_sizesCoverOneToTwoThousand_oddAndEven() -> None:
    sizes = {len(t) for t in TREES}
    assert {1, 2, 3, 2000} <= sizes
    assert any(n % 2 for n in sizes)
    assert any(n % 2 == 0 for n in sizes)
    assert max(sizes) == 2000


def test_leaf_isTheStandardMerkleTreeLeafOfTheBytes32() -> None:
    for value in TREES[-1][:50]:
        assert leaf_of(value) == standard_leaf(value)  # eth-abi + eth-utils keccak reference
    with pytest.raises(ValueError, match="32 bytes"):
        leaf_of(b"\x00" * 31)


def test_pathsAreLogarithmic_andProcessProofIsHashPairFolded() -> None:
    for values in TREES:
        tree = MerkleTree(values)
        assert len(tree) == len(values)
        depth = (len(values) - 1).bit_length()
        for value in values[:20]:
            proof = tree.proof(value)
            assert len(proof) <= depth
            node = leaf_of(value)
            for sibling in proof:
                node = hash_pair(node, sibling)
            assert node == process_proof(proof, leaf_of(value)) == tree.root


def test_unknownValue_andEmptyTree() -> None:
    tree = MerkleTree(TREES[3])
    with pytest.raises(KeyError):
        tree.proof(keccak256(b"not in the tree"))
    with pytest.raises(ValueError, match="at least one"):
        MerkleTree([])
    single = MerkleTree([TREES[0][0]])
    assert single.root == leaf_of(TREES[0][0])
    assert single.proof(TREES[0][0]) == []


@pytest.mark.node
def test_rootsAndEveryProof_matchOpenZeppelinMerkleTree() -> None:
    built = oz_merkle_trees(TREES)
    assert len(built) == len(TREES)
    for values, (root, proofs) in zip(TREES, built, strict=True):
        tree = MerkleTree(values)
        assert tree.root == root, f"{len(values)} leaves"
        assert [tree.proof(v) for v in values] == proofs, f"{len(values)} leaves"


VERIFY_SELECTOR = keccak256(b"verify(bytes32[],bytes32,bytes32)")[:4]


async def _verify_all(
    chain: Chain, calls: Sequence[tuple[list[bytes], bytes, bytes]]
) -> list[bool]:
    """``ReadingAnchor.verify(proof, root, leaf)`` for each call, as JSON-RPC batches of raw
    eth_calls (web3's per-call ABI machinery costs ~4 ms a call; this is the same calldata)."""
    provider = chain.client.w3.provider
    results: list[bool] = []
    for start in range(0, len(calls), BATCH):
        requests = [
            (
                RPCEndpoint("eth_call"),
                [
                    {
                        "to": chain.anchor,
                        "data": "0x"
                        + (
                            VERIFY_SELECTOR
                            + abi_encode(["bytes32[]", "bytes32", "bytes32"], [proof, root, leaf])
                        ).hex(),
                    },
                    "latest",
                ],
            )
            for proof, root, leaf in calls[start : start + BATCH]
        ]
        answers = await provider.make_batch_request(requests)  # type: ignore[attr-defined]
        assert isinstance(answers, list), answers
        assert len(answers) == len(requests)
        for answer in sorted(answers, key=lambda a: a["id"]):
            assert "error" not in answer, answer
            results.append(int(answer["result"], 16) == 1)
    return results


@pytest.mark.chain
async def test_openZeppelinMerkleProof_acceptsEveryProofOnChain(snapshot: Chain) -> None:
    chain = snapshot
    anchor = chain.client.contract("ReadingAnchor", chain.anchor)
    signer = chain.anchorer
    trees = [MerkleTree(values) for values in TREES]
    for i, (values, tree) in enumerate(zip(TREES, trees, strict=True)):
        ref = keccak256(f"merkle-test-{i}".encode())
        await signer.transact(anchor.functions.anchor(tree.root, len(values), ref))
    good = [
        (tree.proof(v), tree.root, leaf_of(v))
        for values, tree in zip(TREES, trees, strict=True)
        for v in values
    ]
    assert len(good) == sum(len(t) for t in TREES)
    assert all(await _verify_all(chain, good))
    # and it can say no: a flipped leaf, a dropped step, another tree's root
    rng = random.Random(7)
    bad = []
    for values, tree in zip(TREES, trees, strict=True):
        value = rng.choice(values)
        proof, leaf = tree.proof(value), leaf_of(value)
        bad.append((proof, tree.root, keccak256(leaf)))
        if proof:
            bad.append((proof[:-1], tree.root, leaf))
        other = trees[(trees.index(tree) + 1) % len(trees)]
        bad.append((proof, other.root, leaf))
        assert not verify_proof(proof, other.root, leaf)
    assert not any(await _verify_all(chain, bad))


def test_processProof_withKnownNodes_isTheSameRoot() -> None:
    values = [bytes([i]) * 32 for i in range(37)]
    tree = MerkleTree(values)
    known: dict[bytes, bytes] = {}
    for value in values:
        path = tree.proof(value)
        assert process_proof(path, leaf_of(value), known) == process_proof(path, leaf_of(value))
        assert process_proof(path, leaf_of(value), known) == tree.root
    assert 0 < len(known) < 37 * 6  # shared upper nodes are hashed once
    forged = [bytes(32), *tree.proof(values[0])[1:]]
    assert process_proof(forged, leaf_of(values[0]), known) != tree.root
