"""Bundle verification throughput: ``chainsense verify``'s bundle path (parse + every offline
check, including the header and the receipts-trie proof) on every core, as a ratio to the same
run's signature-recovery rate on every core.

    .venv/bin/python bench/verify_bundle.py [--proofs 100000] [--batch 2000] [--workers N]

The bundle is synthetic but complete: readings signed by 16 keys, Merkle batches of ``--batch``
readings, each root in a ``RootAnchored`` log of a receipt in a receipts trie, under a block
header whose hash is trusted. Every proof is checked exactly as a real one (the block evidence is
built by the same code from JSON-RPC shaped blocks and receipts). The reference is
``ReadingVerifier.recover_struct`` on the same (struct hash, signature) pairs, in the same
process pool layout: the cost of checking only the signatures. Target: ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from chainsense.identity import DeviceKey, ReadingVerifier, keccak256, struct_hash
from chainsense.provenance.blockproof import (
    ROOT_ANCHORED_TOPIC,
    build_header_rlp,
    build_receipt_proof,
)
from chainsense.provenance.bundle import trusted_judge, verify_file, verify_lines
from chainsense.provenance.bundle_check import check_lines as check_v2_lines
from chainsense.provenance.bundle_v2 import bundle_lines
from chainsense.provenance.merkle import MerkleTree, leaf_of
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import AnchorRef, DomainRef, MetricRef, ProofDocument, SchemaRef
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ANCHOR = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
SCHEMA = SchemaRef(
    COLD.id, COLD.name, tuple(MetricRef(m.name, m.unit, m.scale) for m in COLD.metrics), 1
)


def _word(n: int) -> str:
    return n.to_bytes(32).hex()


def _block(number: int, time_s: int, root: bytes) -> tuple[dict[str, str], list[dict[str, object]]]:
    """A JSON-RPC shaped block and its receipts: a transfer, then the anchor transaction."""
    log = {
        "address": ANCHOR,
        "topics": ["0x" + ROOT_ANCHORED_TOPIC.hex(), "0x" + root.hex(), "0x" + "00" * 32,
                   "0x" + "00" * 12 + "70997970c51812dc3a010c7d01b50e0d17dc79c8"],
        "data": "0x" + _word(2000) + _word(time_s),
    }  # fmt: skip
    receipts: list[dict[str, object]] = [
        {"transactionIndex": "0x0", "status": "0x1", "cumulativeGasUsed": "0x5208",
         "logsBloom": "0x" + "00" * 256, "logs": [], "type": "0x2"},
        {"transactionIndex": "0x1", "status": "0x1", "cumulativeGasUsed": "0x14c08",
         "logsBloom": "0x" + "00" * 256, "logs": [log], "type": "0x2"},
    ]  # fmt: skip
    receipts_root, _ = build_receipt_proof(receipts, 1)
    zero = "0x" + "00" * 32
    block = {
        "parentHash": zero, "sha3Uncles": zero, "miner": "0x" + "00" * 20, "stateRoot": zero,
        "transactionsRoot": zero, "receiptsRoot": "0x" + receipts_root.hex(),
        "logsBloom": "0x" + "00" * 256, "difficulty": "0x0", "number": hex(number),
        "gasLimit": "0x1c9c380", "gasUsed": "0x14c08", "timestamp": hex(time_s),
        "extraData": "0x", "mixHash": zero, "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x3b9aca00", "withdrawalsRoot": zero, "blobGasUsed": "0x0",
        "excessBlobGas": "0x0", "parentBeaconBlockRoot": zero, "requestsHash": zero,
    }  # fmt: skip
    return block, receipts


def make_bundle(count: int, batch: int) -> tuple[list[ProofDocument], set[bytes]]:
    rng = random.Random(12)
    keys = [DeviceKey(rng.randbytes(32)) for _ in range(16)]
    docs: list[ProofDocument] = []
    trusted: set[bytes] = set()
    domain = DomainRef(CHAIN_ID, REGISTRY)
    for start in range(0, count, batch):
        signed = []
        for i in range(start, min(count, start + batch)):
            key = keys[i % len(keys)]
            reading = key.reading(
                seq=i + 1, timestamp=1_763_700_000_000 + i, schema=COLD.id,
                values=(rng.randrange(-2000, 2000), rng.randrange(0, 1000)),
            )  # fmt: skip
            signed.append((reading, key.sign(reading, CHAIN_ID, REGISTRY)))
        hashes = [struct_hash(r) for r, _ in signed]
        tree = MerkleTree(hashes)
        number, time_s = 100 + start // batch, 1_763_700_100 + start
        block, receipts = _block(number, time_s, tree.root)
        header = build_header_rlp(block)
        _, nodes = build_receipt_proof(receipts, 1)
        anchor = AnchorRef(
            chain_id=CHAIN_ID, contract=ANCHOR, tx_hash=keccak256(header), block_number=number,
            block_time=time_s, block_hash=keccak256(header), tx_index=1, header_rlp=header,
            receipt_proof=nodes,
        )  # fmt: skip
        trusted.add(anchor.block_hash)
        for (reading, signature), h in zip(signed, hashes, strict=True):
            doc = ProofDocument(
                reading=reading, signature=signature, domain=domain, schema=SCHEMA,
                struct_hash=h, leaf=leaf_of(h), proof=tuple(tree.proof(h)), root=tree.root,
                anchor=anchor, reading_id=None, batch_id=None,
            )  # fmt: skip
            docs.append(doc)
    return docs, trusted


def bundle_text(docs: Sequence[ProofDocument], form: str) -> list[str]:
    """The bundle's lines: ``v2`` (chainsense.bundle.v2 with a Merkle path per proof line, what
    ``chainsense export`` writes), ``complete`` (chainsense.bundle.v2, each batch whole in one
    complete section: no paths, each tree rebuilt once) or ``proofs`` (one chainsense.proof.v2
    document per line)."""
    if form in ("v2", "complete"):
        return list(bundle_lines(docs, complete=form == "complete"))
    return [json.dumps(doc.to_json(), separators=(",", ":")) for doc in docs]


def _pairs(docs: Sequence[ProofDocument]) -> list[tuple[bytes, bytes]]:
    return [(doc.struct_hash, doc.signature) for doc in docs]


def _recover_chunk(pairs: Sequence[tuple[bytes, bytes]]) -> int:
    verifier = ReadingVerifier(CHAIN_ID, REGISTRY)
    return sum(1 for h, sig in pairs if verifier.recover_struct(h, sig))


def recovery_rate(docs: Sequence[ProofDocument], workers: int) -> float:
    pairs = _pairs(docs)
    chunks = [pairs[i : i + 500] for i in range(0, len(pairs), 500)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["chainsense.provenance.bundle"])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_recover_chunk, chunks[:workers]))  # start the workers before timing
        start = time.perf_counter()
        done = sum(pool.map(_recover_chunk, chunks))
        elapsed = time.perf_counter() - start
    assert done == len(pairs)
    return len(pairs) / elapsed


def cpu_per_proof(
    docs: Sequence[ProofDocument], form: str, pins: Pins, rounds: int
) -> tuple[float, float]:
    """Seconds of this process's CPU per proof, best of ``rounds``, alternating: signature
    recovery only, and the bundle worker's job (parse + every offline check). CPU time on one
    core is what the code costs, whatever else the machine runs; the pool rates above are
    wall-clock and move with the machine's load."""
    from chainsense.provenance import bundle

    pairs = _pairs(docs)
    lines = bundle_text(docs, form)
    raw = [line.encode() for line in lines]
    bundle._init(pins)
    recover, verify = [], []
    for _ in range(rounds):
        start = time.process_time()
        _recover_chunk(pairs)
        recover.append(time.process_time() - start)
        start = time.process_time()
        if form != "proofs":
            result = check_v2_lines(raw, None, True, pins)
        else:
            result = bundle._chunk((0, lines))
        verify.append(time.process_time() - start)
        assert result.count == len(docs)
        assert not result.others
    return min(recover) / len(docs), min(verify) / len(docs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proofs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the two pool runs; report the best"
    )
    parser.add_argument(
        "--cpu-proofs", type=int, default=4000, help="proofs for the one-core CPU-time figure"
    )
    parser.add_argument(
        "--form",
        choices=("v2", "complete", "proofs"),
        default="v2",
        help="v2: a chainsense.bundle.v2 file (batch lines + small proof lines with their Merkle "
        "paths, what chainsense export writes); complete: the same with each batch whole in a "
        "complete section (no paths: each tree rebuilt once); proofs: one whole "
        "chainsense.proof.v2 document per line",
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="verify the lines held in memory (verify_lines: they travel to the workers through "
        "pipes) instead of a JSONL file the workers read by byte ranges (what the CLI does)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    docs, trusted = make_bundle(args.proofs, args.batch)
    lines = bundle_text(docs, args.form)
    size = sum(len(x) + 1 for x in lines)
    built = time.perf_counter() - t0
    print(
        f"bundle ({args.form}): {len(docs)} proofs, {len(trusted)} blocks, {size / 1e6:.1f} MB "
        f"({size / len(docs):.0f} B/proof), built in {built:.1f} s"
    )
    print(f"workers: {args.workers} (cpu_count {os.cpu_count()}), python {sys.version.split()[0]}")
    pins = Pins(CHAIN_ID, REGISTRY, ANCHOR)
    references, rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "proofs.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        if args.in_memory:
            print("input: the lines in memory (verify_lines)")
        else:
            print("input: a JSONL file the workers read by ranges (verify_file, as the CLI does)")
        for _ in range(args.rounds):
            references.append(recovery_rate(docs, args.workers))
            judge = trusted_judge(trusted)
            start = time.perf_counter()
            if args.in_memory:
                result = verify_lines(lines, pins=pins, block=judge, workers=args.workers)
            else:
                result = verify_file(path, pins=pins, block=judge, workers=args.workers)
            elapsed = time.perf_counter() - start
            assert result.ok, result.to_json()
            assert result.total == len(docs)
            rates.append(len(docs) / elapsed)
            print(
                f"  round: reference {references[-1]:,.0f}/s, bundle {rates[-1]:,.0f}/s, "
                f"ratio {rates[-1] / references[-1]:.2f}"
            )
    ratios = sorted(r / ref for r, ref in zip(rates, references, strict=True))
    print(
        f"rounds' own ratios: {', '.join(f'{x:.2f}' for x in ratios)} "
        f"(median {ratios[len(ratios) // 2]:.2f}; load average {os.getloadavg()[0]:.1f})"
    )
    reference, rate = max(references), max(rates)
    print(f"signature recovery only (reference): {reference:10,.0f} proofs/s")
    print(
        f"bundle verification, every check:    {rate:10,.0f} proofs/s  "
        f"({len(docs) / rate:.1f} s, pool start-up included)"
    )
    print(f"ratio: {rate / reference:.2f} (target >= 0.8)")
    if args.cpu_proofs:
        recover, verify = cpu_per_proof(docs[: args.cpu_proofs], args.form, pins, 5)
        print(
            f"one core, CPU time per proof: recovery {recover * 1e6:.1f} us, bundle "
            f"{verify * 1e6:.1f} us, ratio {recover / verify:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
