"""ReadingAnchor: anchoring, its revert paths, StandardMerkleTree leaves, and proof verification
against real (small) trees built here the way OpenZeppelin builds them."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from chainsense.contracts import load_artifact
from chainsense.provenance import MerkleTree
from tests.contracts.helpers import (
    ZERO_ADDRESS,
    ZERO_BYTES32,
    Reading,
    Roles,
    assert_reverts,
    deploy,
    emitted,
    make_account,
    oz_merkle_trees,
    reading_struct_hash,
    rpc,
    send,
    standard_leaf,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

DEFAULT_ADMIN_ROLE = ZERO_BYTES32
ANCHORER_ROLE = keccak(text="ANCHORER_ROLE")
ROOT = keccak(text="batch-root-1")
BATCH_REF = keccak(text="batch-0001")
UINT32_MAX = 2**32 - 1
TREE_SIZES = [1, 2, 3, 7]
SCHEMA = keccak(text="chainsense.coldchain.v1")
DEVICE = make_account("anchor-device")


def struct_hashes(count: int, salt: int = 0) -> list[bytes]:
    """hashStruct of ``count`` distinct readings (the values a batch tree commits to)."""
    readings = [
        Reading(
            device=DEVICE.address,
            seq=salt * 1_000 + i + 1,
            timestamp=1_763_700_000_000 + i * 1_000,
            schema=SCHEMA,
            values=(4150 - i, -i),
        )
        for i in range(count)
    ]
    # hashStruct does not depend on the domain; any chain id and contract will do.
    return [reading_struct_hash(r, chain_id=1, verifying_contract=ZERO_ADDRESS) for r in readings]


def anchor_root(
    anchor: Contract, roles: Roles, root: bytes, count: int = 1, batch_ref: bytes = BATCH_REF
) -> None:
    send(anchor.functions.anchor(root, count, batch_ref), sender=roles.anchorer.address)


def verify(anchor: Contract, proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    return bool(anchor.functions.verify(proof, root, leaf).call())


def flip_byte(value: bytes, index: int = 31) -> bytes:
    return value[:index] + bytes([value[index] ^ 0x01]) + value[index + 1 :]


# --- constructor, roles, pause ----------------------------------------------------------------


def test_constructor_grantsRoles(anchor: Contract, roles: Roles) -> None:
    has_role = anchor.functions.hasRole
    assert has_role(DEFAULT_ADMIN_ROLE, roles.admin.address).call()
    assert has_role(ANCHORER_ROLE, roles.anchorer.address).call()
    assert not has_role(ANCHORER_ROLE, roles.admin.address).call()
    assert anchor.functions.ANCHORER_ROLE().call() == ANCHORER_ROLE
    assert not anchor.functions.paused().call()


@pytest.mark.parametrize("zero", ["admin", "anchorer"])
def test_constructor_revertsOnZeroAddress(w3: Web3, roles: Roles, zero: str) -> None:
    artifact = load_artifact("ReadingAnchor")
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    admin = ZERO_ADDRESS if zero == "admin" else roles.admin.address
    anchorer = ZERO_ADDRESS if zero == "anchorer" else roles.anchorer.address
    assert_reverts(
        factory.constructor(admin, anchorer),
        "ReadingAnchorZeroAddress",
        sender=roles.admin.address,
    )


def test_pause_unpause_byAdminOnly(anchor: Contract, roles: Roles) -> None:
    for account in (roles.anchorer, roles.stranger):
        assert_reverts(
            anchor.functions.pause(),
            "AccessControlUnauthorizedAccount",
            account.address,
            DEFAULT_ADMIN_ROLE,
            sender=account.address,
        )
    receipt = send(anchor.functions.pause(), sender=roles.admin.address)
    assert emitted(anchor, receipt) == [("Paused", {"account": roles.admin.address})]
    assert_reverts(anchor.functions.pause(), "EnforcedPause", sender=roles.admin.address)
    assert_reverts(
        anchor.functions.unpause(),
        "AccessControlUnauthorizedAccount",
        roles.anchorer.address,
        DEFAULT_ADMIN_ROLE,
        sender=roles.anchorer.address,
    )
    receipt = send(anchor.functions.unpause(), sender=roles.admin.address)
    assert emitted(anchor, receipt) == [("Unpaused", {"account": roles.admin.address})]
    assert_reverts(anchor.functions.unpause(), "ExpectedPause", sender=roles.admin.address)


# --- anchor -----------------------------------------------------------------------------------


def test_anchor_storesRecordAndEmits(w3: Web3, anchor: Contract, roles: Roles) -> None:
    when = int(w3.eth.get_block("latest")["timestamp"]) + 1_234
    rpc(w3, "evm_setNextBlockTimestamp", when)
    receipt = send(anchor.functions.anchor(ROOT, 42, BATCH_REF), sender=roles.anchorer.address)
    block = w3.eth.get_block(receipt["blockNumber"])
    assert block["timestamp"] == when
    assert emitted(anchor, receipt) == [
        (
            "RootAnchored",
            {
                "root": ROOT,
                "batchRef": BATCH_REF,
                "readingCount": 42,
                "anchorer": roles.anchorer.address,
                "blockTime": when,
            },
        )
    ]
    assert tuple(anchor.functions.anchorOf(ROOT).call()) == (
        42,
        receipt["blockNumber"],
        when,
    )
    assert anchor.functions.isAnchored(ROOT).call()


def test_anchor_acceptsMaxCountAndZeroBatchRef(anchor: Contract, roles: Roles) -> None:
    anchor_root(anchor, roles, ROOT, UINT32_MAX, ZERO_BYTES32)
    count, _, block_time = anchor.functions.anchorOf(ROOT).call()
    assert count == UINT32_MAX
    assert block_time > 0


def test_anchor_revertsWhenRootAlreadyAnchored(anchor: Contract, roles: Roles) -> None:
    anchor_root(anchor, roles, ROOT, 3)
    before = tuple(anchor.functions.anchorOf(ROOT).call())
    assert_reverts(
        anchor.functions.anchor(ROOT, 5, keccak(text="another-batch")),
        "ReadingAnchorRootAlreadyAnchored",
        ROOT,
        sender=roles.anchorer.address,
    )
    assert tuple(anchor.functions.anchorOf(ROOT).call()) == before


@pytest.mark.parametrize(
    ("root", "count"),
    [(ZERO_BYTES32, 1), (ROOT, 0), (ZERO_BYTES32, 0)],
    ids=["zero-root", "zero-count", "both"],
)
def test_anchor_revertsOnEmptyBatch(
    anchor: Contract, roles: Roles, root: bytes, count: int
) -> None:
    assert_reverts(
        anchor.functions.anchor(root, count, BATCH_REF),
        "ReadingAnchorEmptyBatch",
        sender=roles.anchorer.address,
    )
    assert not anchor.functions.isAnchored(root).call()


@pytest.mark.parametrize("caller", ["admin", "operator", "stranger"])
def test_anchor_revertsForUnauthorizedCaller(anchor: Contract, roles: Roles, caller: str) -> None:
    account = getattr(roles, caller)
    assert_reverts(
        anchor.functions.anchor(ROOT, 1, BATCH_REF),
        "AccessControlUnauthorizedAccount",
        account.address,
        ANCHORER_ROLE,
        sender=account.address,
    )


def test_anchor_revertsWhenPaused(anchor: Contract, roles: Roles) -> None:
    send(anchor.functions.pause(), sender=roles.admin.address)
    assert_reverts(
        anchor.functions.anchor(ROOT, 1, BATCH_REF), "EnforcedPause", sender=roles.anchorer.address
    )
    send(anchor.functions.unpause(), sender=roles.admin.address)
    anchor_root(anchor, roles, ROOT)
    assert anchor.functions.isAnchored(ROOT).call()


def test_isAnchored_anchorOf_unknownRoot(anchor: Contract, roles: Roles) -> None:
    anchor_root(anchor, roles, ROOT)
    other = keccak(text="never-anchored")
    assert not anchor.functions.isAnchored(other).call()
    assert not anchor.functions.isAnchored(ZERO_BYTES32).call()
    assert tuple(anchor.functions.anchorOf(other).call()) == (0, 0, 0)


# --- leaves -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [ZERO_BYTES32, b"\xff" * 32, keccak(text="x"), *struct_hashes(1)],
    ids=["zero", "ones", "keccak-x", "reading-struct-hash"],
)
def test_leafOf_matchesStandardMerkleTreeLeaf(anchor: Contract, value: bytes) -> None:
    expected = keccak(keccak(abi_encode(["bytes32"], [value])))
    assert standard_leaf(value) == expected
    assert anchor.functions.leafOf(value).call() == expected


def test_leafOf_ofOnChainHashReading_matchesPython(
    w3: Web3, anchor: Contract, roles: Roles, chain_id: int
) -> None:
    registry = deploy(
        w3,
        "DeviceRegistry",
        roles.admin.address,
        roles.operator.address,
        sender=roles.admin.address,
    )
    reading = Reading(
        device=DEVICE.address, seq=9, timestamp=1_763_700_000_000, schema=SCHEMA, values=(-5, 7)
    )
    struct_hash = registry.functions.hashReading(reading.as_abi()).call()
    assert struct_hash == reading_struct_hash(
        reading, chain_id=chain_id, verifying_contract=registry.address
    )
    assert anchor.functions.leafOf(struct_hash).call() == standard_leaf(struct_hash)


# --- verify -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", TREE_SIZES)
def test_verify_acceptsEveryLeafOfAnAnchoredTree(anchor: Contract, roles: Roles, size: int) -> None:
    values = struct_hashes(size)
    tree = MerkleTree(values)
    anchor_root(anchor, roles, tree.root, size)
    for value in values:
        proof = tree.proof(value)
        assert len(proof) <= size.bit_length()
        leaf = anchor.functions.leafOf(value).call()
        assert verify(anchor, proof, tree.root, leaf)
    if size == 1:
        assert tree.root == standard_leaf(values[0])


@pytest.mark.parametrize("size", TREE_SIZES)
def test_verify_rejectsTamperedProofOrLeaf(anchor: Contract, roles: Roles, size: int) -> None:
    values = struct_hashes(size)
    tree = MerkleTree(values)
    anchor_root(anchor, roles, tree.root, size)
    outsider = struct_hashes(1, salt=99)[0]
    for position, value in enumerate(values):
        proof = tree.proof(value)
        leaf = standard_leaf(value)
        for i in range(len(proof)):
            for byte in (0, 31):
                bad = [*proof[:i], flip_byte(proof[i], byte), *proof[i + 1 :]]
                assert not verify(anchor, bad, tree.root, leaf)
        assert not verify(anchor, [*proof, keccak(text="extra")], tree.root, leaf)
        if proof:
            assert not verify(anchor, proof[:-1], tree.root, leaf)
        assert not verify(anchor, proof, tree.root, flip_byte(leaf))
        assert not verify(anchor, proof, tree.root, standard_leaf(outsider))
        # the struct hash itself is not a leaf: leaves are double-hashed
        assert not verify(anchor, proof, tree.root, value)
        if size > 1:
            neighbour = values[(position + 1) % size]
            assert not verify(anchor, proof, tree.root, standard_leaf(neighbour))


@pytest.mark.parametrize("size", TREE_SIZES)
def test_verify_rejectsRootNeverAnchored(anchor: Contract, roles: Roles, size: int) -> None:
    anchored = MerkleTree(struct_hashes(size, salt=1))
    anchor_root(anchor, roles, anchored.root, size)
    values = struct_hashes(size, salt=2)
    tree = MerkleTree(values)
    assert not anchor.functions.isAnchored(tree.root).call()
    for value in values:
        assert not verify(anchor, tree.proof(value), tree.root, standard_leaf(value))
    # the proofs are correct: anchoring the root makes them verify
    anchor_root(anchor, roles, tree.root, size)
    for value in values:
        assert verify(anchor, tree.proof(value), tree.root, standard_leaf(value))


@pytest.mark.node
def test_standardMerkleTree_matchesOpenZeppelinMerkleTree() -> None:
    trees = [struct_hashes(size, salt=size) for size in [*TREE_SIZES, 16]]
    for values, (root, proofs) in zip(trees, oz_merkle_trees(trees), strict=True):
        tree = MerkleTree(values)
        assert tree.root == root
        assert [tree.proof(v) for v in values] == proofs
