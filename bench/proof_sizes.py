"""Proof size, side by side: a ChainSense v2 proof, an OpenTimestamps proof and a Chainpoint v4
proof for a reading in a batch of the same size, all built here, offline, with each format's own
library (``opentimestamps`` from PyPI; ``chainpoint-binary`` from npm, which checks the
Chainpoint JSON schema), never by a public calendar.

    .venv/bin/python bench/proof_sizes.py [--batch 2000] [--btc-depth 12]

The three proofs carry the same kind of path: the leaf's Merkle path in a batch of ``--batch``
items, then the step into the chain. For the two Bitcoin formats that step is the anchoring
transaction (a real serialised transaction with the commitment in an OP_RETURN output, built by
python-bitcoinlib, split around the commitment: the prefix is prepended and the suffix appended)
and the transaction's Merkle path in a Bitcoin block of ``--btc-depth`` levels (a block of 2^12 =
4096 transactions by default), ending in a Bitcoin block-header attestation. A ChainSense proof
ends in the anchor block's header and a receipts-trie proof instead, and it also carries the
reading, its signature, the schema and the domain. The ChainSense bundle is the synthetic one of
``bench/verify_bundle.py`` (two receipts in the anchor block: a busy block has a deeper receipts
trie, see the notes printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bitcoin.core import CMutableTransaction, COutPoint, CTxIn, CTxOut, lx  # type: ignore[import-untyped]
from bitcoin.core.script import OP_RETURN, CScript  # type: ignore[import-untyped]
from opentimestamps.core.notary import BitcoinBlockHeaderAttestation, PendingAttestation  # type: ignore[import-untyped]
from opentimestamps.core.op import OpAppend, OpPrepend, OpSHA256  # type: ignore[import-untyped]
from opentimestamps.core.serialize import BytesSerializationContext  # type: ignore[import-untyped]
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

Step = tuple[str, bytes]  # ("prepend" | "append", bytes)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def batch_path(count: int, index: int) -> list[Step]:
    """The ordered-pair SHA-256 Merkle path of item ``index`` in a batch of ``count`` items (the
    tree OpenTimestamps calendars and Chainpoint build: an odd node is carried up)."""
    level = [sha256(i.to_bytes(8, "big")) for i in range(count)]
    path: list[Step] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(("prepend" if sibling < index else "append", level[sibling]))
        level = [
            sha256(level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        index //= 2
    return path


def anchor_transaction() -> tuple[bytes, bytes]:
    """A Bitcoin transaction committing to 32 bytes in an OP_RETURN output (one input, the
    OP_RETURN and a change output, as a calendar's), split around the commitment."""
    marker = b"\xab" * 32
    tx = CMutableTransaction(
        [CTxIn(COutPoint(lx("11" * 32), 0), CScript(), 0xFFFFFFFD)],
        [CTxOut(0, CScript([OP_RETURN, marker])),
         CTxOut(50_000, CScript(bytes.fromhex("0014") + b"\x22" * 20))],
    )  # fmt: skip
    raw = tx.serialize()
    at = raw.index(marker)
    return raw[:at], raw[at + 32 :]


def ots_size(leaf: bytes, path: list[Step], btc_depth: int, *, bitcoin: bool) -> int:
    """Serialised size of a detached OpenTimestamps proof (.ots file) for ``leaf``."""
    stamp = Timestamp(leaf)
    node = stamp
    for side, data in path:
        node = node.ops.add(OpPrepend(data) if side == "prepend" else OpAppend(data))
        node = node.ops.add(OpSHA256())
    if not bitcoin:
        node.attestations.add(PendingAttestation("https://calendar.example"))
    else:
        prefix, suffix = anchor_transaction()
        node = node.ops.add(OpPrepend(prefix)).ops.add(OpAppend(suffix))
        node = node.ops.add(OpSHA256()).ops.add(OpSHA256())  # the txid
        for level in range(btc_depth):
            sibling = sha256(b"btc" + bytes([level]))
            node = node.ops.add(OpAppend(sibling) if level % 2 else OpPrepend(sibling))
            node = node.ops.add(OpSHA256()).ops.add(OpSHA256())
        node.attestations.add(BitcoinBlockHeaderAttestation(870_000))
    ctx = BytesSerializationContext()
    DetachedTimestampFile(OpSHA256(), stamp).serialize(ctx)
    return len(ctx.getbytes())


def chainpoint_proof(leaf: bytes, path: list[Step], btc_depth: int) -> dict[str, Any]:
    """A Chainpoint v4 proof: the calendar branch (the batch path, a ``cal`` anchor) and, inside
    it, the Bitcoin branch (transaction, block path, a ``btc`` anchor), as Chainpoint Core
    writes them."""
    ops: list[dict[str, str]] = []
    for side, data in path:
        ops += [{"l" if side == "prepend" else "r": data.hex()}, {"op": "sha-256"}]
    prefix, suffix = anchor_transaction()
    btc: list[dict[str, str]] = [{"l": prefix.hex()}, {"r": suffix.hex()}, {"op": "sha-256-x2"}]
    for level in range(btc_depth):
        sibling = sha256(b"btc" + bytes([level])).hex()
        btc += [{"r" if level % 2 else "l": sibling}, {"op": "sha-256-x2"}]
    cal_anchor = {"type": "cal", "anchor_id": "1234567",
                  "uris": ["https://calendar.example/calendar/1234567/hash"]}  # fmt: skip
    btc_anchor = {"type": "btc", "anchor_id": "870000",
                  "uris": ["https://calendar.example/calendar/1234600/data"]}  # fmt: skip
    return {
        "@context": "https://w3id.org/chainpoint/v4",
        "type": "Chainpoint",
        "hash": leaf.hex(),
        "proof_id": "6f3e1c2a-8d2b-11ee-b9d1-0242ac120002",
        "hash_received": "2026-12-03T23:00:00Z",
        "branches": [{
            "label": "cal_anchor_branch",
            "ops": [*ops, {"anchors": [cal_anchor]}],
            "branches": [{"label": "btc_anchor_branch", "ops": [*btc, {"anchors": [btc_anchor]}]}],
        }],
    }  # fmt: skip


def chainpoint_sizes(proof: dict[str, Any]) -> dict[str, int]:
    done = subprocess.run(
        ["node", str(ROOT / "bench" / "chainpoint_size.mjs")], input=json.dumps(proof),
        capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    sizes: dict[str, int] = json.loads(done.stdout)
    return sizes


def chainsense_sizes(batch: int) -> dict[str, float]:
    from verify_bundle import make_bundle

    made, _ = make_bundle(batch, batch)
    docs = [doc.to_json() for doc in made]
    compact = [len(json.dumps(d, separators=(",", ":"))) for d in docs]
    chain_part = [
        len(json.dumps({k: d[k] for k in ("leaf", "merkle_proof", "root")}, separators=(",", ":")))
        + len(json.dumps(d["anchor"], separators=(",", ":")))
        for d in docs
    ]
    return {
        "mean_bytes": sum(compact) / len(compact),
        "max_bytes": max(compact),
        "path_steps_max": max(len(d["merkle_proof"]) for d in docs),
        "leaf_to_block_mean_bytes": sum(chain_part) / len(chain_part),
        "header_bytes": len(bytes.fromhex(docs[0]["anchor"]["header_rlp"][2:])),
        "receipt_nodes": len(docs[0]["anchor"]["receipt_proof"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--btc-depth", type=int, default=12)
    args = parser.parse_args(argv)
    depth = math.ceil(math.log2(args.batch))
    index = 0  # the first leaf always has a sibling: a full-depth path
    path = batch_path(args.batch, index)
    leaf = sha256(index.to_bytes(8, "big"))
    ots_pending = ots_size(leaf, path, args.btc_depth, bitcoin=False)
    ots_bitcoin = ots_size(leaf, path, args.btc_depth, bitcoin=True)
    chp = chainpoint_sizes(chainpoint_proof(leaf, path, args.btc_depth))
    ours = chainsense_sizes(args.batch)
    prefix, suffix = anchor_transaction()
    print(
        f"batch {args.batch} (Merkle depth {depth}, this path {len(path)} steps); Bitcoin "
        f"block depth {args.btc_depth}; anchor tx {len(prefix)} + 32 + {len(suffix)} bytes"
    )
    print(f"OpenTimestamps .ots, batch path + calendar (pending): {ots_pending:6d} B")
    print(f"OpenTimestamps .ots, complete to a Bitcoin block:     {ots_bitcoin:6d} B")
    print(f"Chainpoint v4, JSON:                                 {chp['json_bytes']:6d} B")
    print(f"Chainpoint v4, binary (msgpack+zlib):                {chp['binary_bytes']:6d} B")
    print(
        f"ChainSense v2, JSON, mean (max):                     {ours['mean_bytes']:6.0f} B "
        f"({ours['max_bytes']} B; path <= {ours['path_steps_max']} steps)"
    )
    print(
        f"  of which leaf->block hash (path, root, anchor):   "
        f"{ours['leaf_to_block_mean_bytes']:6.0f} B (header {ours['header_bytes']} B, "
        f"{ours['receipt_nodes']} receipt-trie nodes)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
