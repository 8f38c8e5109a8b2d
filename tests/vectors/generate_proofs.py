# ruff: noqa: E501, PT017, ASYNC110  (a one-off generator script: tables of cases read best unwrapped)
"""Generate the proof conformance vectors in ``tests/vectors/proofs/`` from a real Anvil chain.

    .venv/bin/python -m tests.vectors.generate_proofs

It deploys the contracts (the "published" deployment), registers devices, anchors a batch in a
block that also holds other transactions (so the receipts trie has branches), and writes:

- ``deployment.json``: the published deployment document the vectors are pinned to;
- ``block-hashes.txt``: the trusted block hashes;
- one file per case: ``{"name", "description", "options", "proof", "expect"}``. ``expect`` is
  written here by hand, per tampering (``status`` and the ``failed`` checks, or ``malformed``
  and the ``field``); the generator refuses to write a vector the Python verifier disagrees
  with, and ``tests/provenance/test_vectors.py`` runs both verifiers on the files.

It also performs the forged-deployment attack for real: a second copy of both contracts,
deployed from the published bytecode, a key registered there and a made-up reading anchored
there. That proof is internally perfect and must fail ``contracts``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chainsense.chain import ChainClient, DevChain, Signer, deploy_core
from chainsense.chain.deploy import published_deployment
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.identity import keccak256
from chainsense.identity.eip712 import SECP256K1_N
from chainsense.provenance.blockproof import decode_header
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument, ProofFormatError
from chainsense.provenance.verify import verify_offline
from tests.provenance.support import METER, Chain, device_keys
from tests.support import free_port

OUT = Path(__file__).parent / "proofs"
Raw = dict[str, Any]
Change = Callable[[Raw], object]


def flip(hex_value: str, byte: int = 0) -> str:
    raw = bytearray.fromhex(hex_value[2:])
    raw[byte] ^= 0x01
    return "0x" + raw.hex()


def at(path: str, value: Any) -> Change:
    def change(raw: Raw) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value(node[int(last)]) if callable(value) else value
        else:
            node[last] = value(node[last]) if callable(value) else value

    return change


def drop(path: str) -> Change:
    def change(raw: Raw) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[key]
        del node[last]

    return change


def high_s(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    s = SECP256K1_N - int.from_bytes(raw[32:64])
    return "0x" + (raw[:32] + s.to_bytes(32) + bytes([55 - raw[64]])).hex()


def dec(delta: int) -> Callable[[str], str]:
    return lambda v: str(int(v) + delta)


def reheader(raw: Raw) -> None:
    """Change the header's extraData and make block_hash its hash: a self-consistent header of
    a block nobody trusts."""
    import rlp

    items = rlp.decode(bytes.fromhex(raw["anchor"]["header_rlp"][2:]))
    items[12] = b"forged"
    header = rlp.encode(items)
    raw["anchor"]["header_rlp"] = "0x" + header.hex()
    raw["anchor"]["block_hash"] = "0x" + keccak256(header).hex()


SIGNED = ["leaf", "signature"]


def cases(
    other_device: str, other_registry: str, other_anchor: str
) -> list[tuple[str, str, Change, Any]]:
    """(name, description, change, expected failed checks or ("malformed", field))."""
    return [
        ("reading-device", "another device", at("reading.device", other_device), SIGNED),
        ("reading-seq", "seq + 1", at("reading.seq", dec(1)), SIGNED),
        ("reading-timestamp", "timestamp_ms - 1", at("reading.timestamp_ms", dec(-1)), SIGNED),
        ("reading-value", "values[0] + 1", at("reading.values.0", dec(1)), SIGNED),
        ("reading-value-added", "one value more",
         at("reading.values", lambda v: [*v, "0"]), ["leaf", "schema", "signature"]),
        ("reading-schema", "another schema id",
         at("reading.schema", METER.id_hex), ["leaf", "schema", "signature"]),
        ("signature-r", "r altered", at("reading.signature", flip), ["signature"]),
        ("signature-s", "s altered", at("reading.signature", lambda s: flip(s, 40)), ["signature"]),
        ("signature-high-s", "the malleable twin", at("reading.signature", high_s), ["signature"]),
        ("struct-hash", "struct_hash altered", at("struct_hash", flip), ["leaf"]),
        ("leaf", "leaf altered", at("leaf", lambda v: flip(v, 31)), ["leaf", "merkle-path"]),
        ("root", "root altered", at("root", flip), ["merkle-path", "receipt"]),
        ("merkle-proof-step", "a path step altered",
         at("merkle_proof.0", flip), ["merkle-path"]),
        ("merkle-proof-drop", "a path step removed",
         at("merkle_proof", lambda p: p[:-1]), ["merkle-path"]),
        ("schema-scale", "scale 2 -> 1 (4150 would read 415.0)",
         at("schema.metrics.0.scale", "1"), ["schema"]),
        ("schema-unit", "unit Cel -> K", at("schema.metrics.0.unit", "K"), ["schema"]),
        ("schema-name", "schema renamed", at("schema.name", "chainsense.coldchain.v2"), ["schema"]),
        ("schema-version", "schema version 2", at("schema.version", "2"), ["schema"]),
        ("schema-metric-dropped", "a metric removed",
         at("schema.metrics", lambda m: m[:1]), ["schema"]),
        ("domain-chain-id", "domain on chain 1",
         at("domain.chain_id", "1"), ["contracts", "domain", "signature"]),
        ("domain-name", "domain name ChainSense2", at("domain.name", "ChainSense2"), ["domain"]),
        ("domain-registry", "another DeviceRegistry named",
         at("domain.verifying_contract", other_registry), ["contracts", "signature"]),
        ("anchor-chain-id", "anchor on chain 1",
         at("anchor.chain_id", "1"), ["contracts", "domain"]),
        ("anchor-contract", "another ReadingAnchor named",
         at("anchor.contract", other_anchor), ["contracts", "receipt"]),
        ("anchor-block-number", "block_number + 1", at("anchor.block_number", dec(1)), ["header"]),
        ("anchor-block-time", "block_time_s + 1", at("anchor.block_time_s", dec(1)), ["header"]),
        ("anchor-block-hash", "block_hash altered",
         at("anchor.block_hash", flip), ["block", "header"]),
        ("header-byte", "a header byte altered (stateRoot)",
         at("anchor.header_rlp", lambda h: flip(h, 100)), ["header"]),
        ("header-forged", "a self-consistent header of an untrusted block", reheader, ["block"]),
        ("receipt-node-byte", "a byte of the receipt's trie node altered",
         at("anchor.receipt_proof", lambda p: [*p[:-1], flip(p[-1], len(p[-1]) // 2 - 4)]),
         ["receipt"]),
        ("receipt-node-dropped", "the first trie node removed",
         at("anchor.receipt_proof", lambda p: p[1:]), ["receipt"]),
        ("receipt-index", "tx_index of another transaction",
         at("anchor.tx_index", dec(1)), ["receipt"]),
        ("malformed-format-v1", "format chainsense.proof.v1",
         at("format", "chainsense.proof.v1"), ("malformed", "format")),
        ("malformed-no-format", "format missing", drop("format"), ("malformed", "format")),
        ("malformed-no-domain-name", "domain.name missing",
         drop("domain.name"), ("malformed", "domain.name")),
        ("malformed-no-domain-version", "domain.version missing",
         drop("domain.version"), ("malformed", "domain.version")),
        ("malformed-unknown-field", "an unknown top-level field",
         at("comment", "hi"), ("malformed", "comment")),
        ("malformed-number", "seq as a JSON number", at("reading.seq", 1), ("malformed", "reading.seq")),
        ("malformed-leading-zero", "a non-canonical integer",
         at("anchor.block_number", lambda n: "0" + n), ("malformed", "anchor.block_number")),
        ("malformed-camel-case", "v1's blockTime name",
         lambda raw: raw["anchor"].update(blockTime=raw["anchor"].pop("block_time_s")),
         ("malformed", "anchor.block_time_s")),
        ("malformed-scale-number", "scale as a JSON number",
         at("schema.metrics.0.scale", 2), ("malformed", "schema.metrics[0].scale")),
    ]  # fmt: skip


def expect_of(verdict: Any) -> dict[str, Any]:
    return {
        "status": verdict.status,
        "failed": sorted(verdict.failed),
        "unchecked": sorted(verdict.unchecked),
    }


def write(
    name: str, description: str, options: dict[str, bool], proof: Any, expect: dict[str, Any]
) -> None:
    body = {
        "name": name,
        "description": description,
        "options": options,
        "proof": proof,
        "expect": expect,
    }
    (OUT / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")


def check(
    name: str,
    proof: Raw,
    expect: dict[str, Any],
    pins: Pins,
    trusted: frozenset[bytes],
    options: dict[str, bool],
) -> None:
    if expect["status"] == "malformed":
        try:
            ProofDocument.from_json(proof)
        except ProofFormatError as exc:
            assert exc.field == expect["field"], (name, exc.field, expect)
            return
        raise AssertionError(f"{name}: parsed, expected malformed at {expect['field']}")
    verdict = verify_offline(
        ProofDocument.from_json(proof),
        pins=pins if options["pinned"] else None,
        trusted_blocks=trusted if options["trusted_blocks"] else None,
    )
    got = expect_of(verdict)
    assert got == expect, (name, got, expect, verdict.to_json())


async def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="vectors-anvil-"))
    devchain = DevChain(state_dir=state, port=free_port(), state_interval=3600.0)
    await devchain.start()
    try:
        client = await ChainClient.connect(devchain.rpc_url)
        try:
            await generate(client, devchain.rpc_url)
        finally:
            await client.close()
    finally:
        await devchain.stop()
        shutil.rmtree(state, ignore_errors=True)


async def generate(client: ChainClient, rpc_url: str) -> None:
    deployer, operator, anchorer = (Signer(client, k) for k in ANVIL_DEV_KEYS[:3])
    deployment = await deploy_core(
        client, deployer, admin=deployer.address, operator=operator.address,
        anchorer=anchorer.address,
    )  # fmt: skip
    chain = Chain(
        rpc_url=rpc_url, client=client, operator=operator, anchorer=anchorer,
        registry=deployment.address("DeviceRegistry"), anchor=deployment.address("ReadingAnchor"),
        chain_id=deployment.chain_id,
    )  # fmt: skip
    keys = device_keys()[:3]
    for key in keys:
        await chain.register(key)
    await chain.advance()
    items = [
        chain.sign(key, seq, (4150 - 10 * seq, 620 + i))
        for i, key in enumerate(keys)
        for seq in (1, 2)
    ]
    items.append(chain.sign(keys[0], 3, (1200, 0), METER))
    # other transactions in the anchor's block: the receipts trie gets branches
    await chain.rpc("evm_setAutomine", False)
    accounts = await chain.rpc("eth_accounts")
    for i in range(3):
        await chain.rpc(
            "eth_sendTransaction", {"from": accounts[3], "to": accounts[4], "value": hex(i + 1)}
        )
    task = asyncio.create_task(chain.anchor_batch(items, label="vectors"))
    while int((await chain.rpc("txpool_status"))["pending"], 16) < 4:
        await asyncio.sleep(0.05)
    await chain.rpc("eth_sendTransaction", {"from": accounts[4], "to": accounts[3], "value": "0x1"})
    await chain.rpc("evm_mine")
    await chain.rpc("evm_setAutomine", True)
    proofs = await task
    a0 = proofs[0].anchor
    assert len(a0.receipt_proof) > 1, (a0.tx_index, len(a0.receipt_proof))

    # the forged deployment: copies of both contracts from the same bytecode, the attacker's
    # own registry and key, a made-up reading anchored there
    attacker = Signer(client, ANVIL_DEV_KEYS[4])
    forged = await deploy_core(
        client, attacker, admin=attacker.address, operator=attacker.address,
        anchorer=attacker.address,
    )  # fmt: skip
    fake = Chain(
        rpc_url=rpc_url, client=client, operator=attacker, anchorer=attacker,
        registry=forged.address("DeviceRegistry"), anchor=forged.address("ReadingAnchor"),
        chain_id=forged.chain_id,
    )  # fmt: skip
    await fake.register(keys[0])
    await fake.advance()
    forged_proofs = await fake.anchor_batch([fake.sign(keys[0], 1, (250, 400))], label="forged")
    await chain.advance()

    published = await published_deployment(client, deployment)
    pins = Pins.from_document(published)
    blocks = sorted({p.anchor.block_hash for p in proofs + forged_proofs})
    trusted = frozenset(blocks)
    for header in (decode_header(p.anchor.header_rlp) for p in proofs + forged_proofs):
        live = await chain.rpc("eth_getBlockByNumber", hex(header.number), False)
        assert live["hash"] == "0x" + header.hash.hex(), "keccak(rlp(header)) != Anvil's hash"

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    (OUT / "deployment.json").write_text(json.dumps(published, indent=2) + "\n")
    (OUT / "block-hashes.txt").write_text(
        "# trusted block hashes of the anchor blocks (Anvil, chain 31337)\n"
        + "".join(f"0x{h.hex()}\n" for h in blocks)
    )
    full = {"pinned": True, "trusted_blocks": True}
    valid = {"status": "valid", "failed": [], "unchecked": []}
    for i, doc in enumerate(proofs):
        raw = doc.to_json()
        check(f"valid-{i}", raw, valid, pins, trusted, full)
        write(f"valid-{i}", f"reading {i} of the batch, untouched", full, raw, valid)
    base = proofs[0].to_json()
    unpinned = {"status": "incomplete", "failed": [], "unchecked": ["contracts"]}
    check("unpinned", base, unpinned, pins, trusted, {"pinned": False, "trusted_blocks": True})
    write(
        "unpinned",
        "a valid proof, verified without pins",
        {"pinned": False, "trusted_blocks": True},
        base,
        unpinned,
    )
    untrusted = {"status": "incomplete", "failed": [], "unchecked": ["block"]}
    check(
        "no-trusted-block",
        base,
        untrusted,
        pins,
        trusted,
        {"pinned": True, "trusted_blocks": False},
    )
    write(
        "no-trusted-block",
        "a valid proof, no trusted block hash given",
        {"pinned": True, "trusted_blocks": False},
        base,
        untrusted,
    )
    forged_expect = {"status": "invalid", "failed": ["contracts"], "unchecked": []}
    raw_forged = forged_proofs[0].to_json()
    check("forged-deployment", raw_forged, forged_expect, pins, trusted, full)
    write(
        "forged-deployment",
        "contracts deployed by an attacker from the published bytecode, a "
        "key registered there, a made-up reading anchored there",
        full,
        raw_forged,
        forged_expect,
    )
    other = device_keys()[3].address
    for name, description, change, expected in cases(other, fake.registry, fake.anchor):
        raw = copy.deepcopy(base)
        change(raw)
        assert raw != base, name
        if isinstance(expected, tuple):
            expect = {"status": "malformed", "field": expected[1]}
        else:
            expect = {"status": "invalid", "failed": sorted(expected), "unchecked": []}
            failed = set(expected)
            if "header" in failed and "receipt" not in failed:
                expect["unchecked"] = ["receipt"]  # it needs the header's receiptsRoot
        check(name, raw, expect, pins, trusted, full)
        write(name, description, full, raw, expect)
    print(f"wrote {len(list(OUT.glob('*.json'))) - 1} vectors to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
