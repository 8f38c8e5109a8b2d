"""Block evidence: the anchor block's header and a receipts-trie proof of the anchoring
transaction's receipt, so a proof verifies from a trusted block hash alone (no RPC).

Why the receipts trie and not the anchor's storage slot (``eth_getProof``): a receipt proof is
fixed once the block is mined and any node that keeps receipts (every full node) can rebuild it
years later from ``eth_getBlockReceipts``; a storage proof is against the state root of one block,
and for an old block only an archive node can produce it. The receipt also carries the
``RootAnchored`` log itself (root, batch reference, count, anchorer, block time), which is exactly
the statement the proof needs: "this contract said, in this block, that this root is anchored".

Everything here is offline and light (``rlp``, ``trie``, keccak): building from JSON-RPC answers
(hex strings, as the node sent them) and checking. Fetching lives with the chain client
(:mod:`chainsense.provenance.blockfetch`).

The header is the consensus RLP list of the block's fields; only positions that every fork since
Frontier keeps are read: ``receiptsRoot`` (5), ``number`` (8), ``timestamp`` (11). Later forks
append fields (baseFee, withdrawalsRoot, blob gas, parentBeaconBlockRoot, requestsHash); the
builder appends each one the node returned, in consensus order, so ``keccak256(header) ==
blockHash`` holds on any fork the node speaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped]
from trie.exceptions import BadTrieProof, MissingTrieNode
from trie.hexary import HexaryTrie

from chainsense.identity import keccak256

__all__ = [
    "HEADER_FIELDS",
    "ROOT_ANCHORED_TOPIC",
    "BlockEvidenceError",
    "Header",
    "RootAnchoredLog",
    "build_header_rlp",
    "build_receipt_proof",
    "decode_header",
    "encode_receipt",
    "receipt_from_proof",
    "root_anchored_logs",
]

ROOT_ANCHORED_TOPIC = keccak256(b"RootAnchored(bytes32,bytes32,uint32,address,uint64)")

HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("parentHash", "bytes"),
    ("sha3Uncles", "bytes"),
    ("miner", "bytes"),
    ("stateRoot", "bytes"),
    ("transactionsRoot", "bytes"),
    ("receiptsRoot", "bytes"),
    ("logsBloom", "bytes"),
    ("difficulty", "int"),
    ("number", "int"),
    ("gasLimit", "int"),
    ("gasUsed", "int"),
    ("timestamp", "int"),
    ("extraData", "bytes"),
    ("mixHash", "bytes"),
    ("nonce", "bytes"),
    ("baseFeePerGas", "int"),  # London
    ("withdrawalsRoot", "bytes"),  # Shanghai
    ("blobGasUsed", "int"),  # Cancun
    ("excessBlobGas", "int"),
    ("parentBeaconBlockRoot", "bytes"),
    ("requestsHash", "bytes"),  # Prague
)
_REQUIRED = 15  # Frontier's fields; the rest are appended when the node returns them


class BlockEvidenceError(ValueError):
    """Block evidence that does not hold; the message says which part."""


def _raw(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def _int(value: str) -> int:
    return int(value, 16)


def build_header_rlp(block: Mapping[str, Any]) -> bytes:
    """The consensus RLP of a block header, from ``eth_getBlockByNumber``'s answer."""
    items: list[Any] = []
    for i, (name, kind) in enumerate(HEADER_FIELDS):
        if name not in block or block[name] is None:
            if i < _REQUIRED:
                raise BlockEvidenceError(f"the node's block has no {name}")
            break
        items.append(_int(block[name]) if kind == "int" else _raw(block[name]))
    return bytes(rlp.encode(items))


@dataclass(frozen=True, slots=True)
class Header:
    """The fields of a header a proof uses, and its hash."""

    hash: bytes
    receipts_root: bytes
    number: int
    timestamp: int


def decode_header(header_rlp: bytes) -> Header:
    try:
        items = rlp.decode(header_rlp)
    except rlp.DecodingError as exc:
        raise BlockEvidenceError(f"the header is not RLP: {exc}") from None
    if not isinstance(items, list) or len(items) < _REQUIRED:
        raise BlockEvidenceError("the header is not a list of at least 15 fields")
    if not all(isinstance(x, bytes) for x in items):
        raise BlockEvidenceError("a header field is a list, not a string")
    receipts_root = items[5]
    if len(receipts_root) != 32:
        raise BlockEvidenceError("receiptsRoot is not 32 bytes")
    return Header(
        hash=keccak256(header_rlp),
        receipts_root=receipts_root,
        number=int.from_bytes(items[8]),
        timestamp=int.from_bytes(items[11]),
    )


def encode_receipt(receipt: Mapping[str, Any]) -> bytes:
    """A receipt as the receipts trie stores it (EIP-2718: ``type || rlp(...)`` when typed)."""
    status = receipt.get("status")
    if status is None:
        raise BlockEvidenceError("pre-Byzantium receipts (state root, no status) are not supported")
    logs = [
        [_raw(log["address"]), [_raw(t) for t in log["topics"]], _raw(log["data"])]
        for log in receipt["logs"]
    ]
    body = bytes(
        rlp.encode(
            [_int(status), _int(receipt["cumulativeGasUsed"]), _raw(receipt["logsBloom"]), logs]
        )
    )
    tx_type = _int(receipt.get("type", "0x0"))
    return body if tx_type == 0 else bytes([tx_type]) + body


def _key(index: int) -> bytes:
    return bytes(rlp.encode(index))


def build_receipt_proof(
    receipts: Sequence[Mapping[str, Any]], tx_index: int
) -> tuple[bytes, tuple[bytes, ...]]:
    """The receipts root of a block and the trie nodes (RLP) from it to receipt ``tx_index``."""
    db: dict[bytes, bytes] = {}
    tree = HexaryTrie(db)
    with tree.squash_changes() as batch:
        for receipt in receipts:
            batch[_key(_int(receipt["transactionIndex"]))] = encode_receipt(receipt)
    nodes = tree.get_proof(_key(tx_index))  # type: ignore[no-untyped-call]
    return tree.root_hash, tuple(bytes(rlp.encode(node)) for node in nodes)


def receipt_from_proof(receipts_root: bytes, tx_index: int, nodes: Sequence[bytes]) -> bytes:
    """The receipt at ``tx_index`` under ``receipts_root``, proven by ``nodes`` (py-trie's proof
    check: every node is looked up by its keccak from the root down)."""
    try:
        decoded = tuple(rlp.decode(node) for node in nodes)
    except rlp.DecodingError as exc:
        raise BlockEvidenceError(f"a trie node is not RLP: {exc}") from None
    try:
        value = HexaryTrie.get_from_proof(  # type: ignore[no-untyped-call]
            receipts_root, _key(tx_index), decoded
        )
    except (BadTrieProof, MissingTrieNode, ValueError, KeyError, IndexError, TypeError) as exc:
        raise BlockEvidenceError(
            f"the trie nodes do not lead from the receipts root to receipt {tx_index}: "
            f"{type(exc).__name__}"
        ) from None
    if not value:
        raise BlockEvidenceError(f"the receipts trie has no receipt at index {tx_index}")
    return bytes(value)


@dataclass(frozen=True, slots=True)
class RootAnchoredLog:
    contract: bytes
    root: bytes
    block_time: int


def root_anchored_logs(receipt: bytes) -> tuple[int, list[RootAnchoredLog]]:
    """The status of an encoded receipt and the ``RootAnchored`` logs it holds."""
    body = receipt[1:] if receipt and receipt[0] < 0x7F else receipt
    try:
        status, _gas, _bloom, logs = rlp.decode(body)
        found = []
        for address, topics, data in logs:
            if len(topics) >= 2 and topics[0] == ROOT_ANCHORED_TOPIC and len(data) >= 64:
                found.append(RootAnchoredLog(address, topics[1], int.from_bytes(data[32:64])))
    except (rlp.DecodingError, ValueError, TypeError) as exc:
        raise BlockEvidenceError(f"the receipt is not a receipt: {exc}") from None
    return int.from_bytes(status), found
