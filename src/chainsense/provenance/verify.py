"""Verification anyone can run: a proof document, the deployment the verifier trusts, and a
trusted block hash (or any RPC endpoint of the chain to confirm the block hash is canonical).

Nothing here reads the issuing platform's store, and nothing here needs a network: this module
is light (no web3), so ``chainsense verify`` starts fast and a process pool can check a bundle.
The RPC part is :mod:`chainsense.provenance.verify_rpc`.

The checks, by name (stable; the CLI, ``POST /v1/verify`` and ``verifier-js`` use them):

``contracts``    the proof names the pinned chain id, DeviceRegistry (``domain.verifying_
                 contract``) and ReadingAnchor (``anchor.contract``); not checked without pins
``schema``       ``schema.id`` = keccak256(abi.encode(name, version, metrics)) recomputed from
                 the schema block, ``reading.schema`` = ``schema.id``, one value per metric
``domain``       the EIP-712 domain is ChainSense v1 on the anchor's chain id
``signature``    the signature recovers ``reading.device`` in that domain
``leaf``         ``struct_hash`` = hashStruct(reading), ``leaf`` = keccak256(keccak256(
                 struct_hash))
``merkle-path``  the path leads from the leaf to the root (OpenZeppelin ``MerkleProof``)
``header``       keccak256(``header_rlp``) = ``block_hash``, and the header's number and
                 timestamp are ``block_number`` and ``block_time_s``
``receipt``      the receipts-trie proof leads from the header's receiptsRoot to receipt
                 ``tx_index``: a successful transaction whose ``RootAnchored`` log from
                 ``anchor.contract`` names ``root`` with ``block_time_s``
``block``        ``block_hash`` is trusted: one the verifier was given (offline), or the
                 canonical block at that height on the RPC endpoint
with an RPC endpoint, also (:mod:`~chainsense.provenance.verify_rpc`)
``code``         the runtime code at the pinned addresses has the pinned code hashes
``device``       ``DeviceRegistry.verifyReadingAt(reading, signature, block time)``: the key was
                 registered and active at anchor time

A check is passed (``ok``), failed, or ``skipped``: not run, because a check it depends on failed
or because its input was not given (no pins, no trusted block hash). A verdict is valid only when
every check passed; one with no failure but a skipped check is *incomplete*, never VALID.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from chainsense.identity import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    IdentityError,
    ReadingVerifier,
    schema_id,
    struct_hash,
)
from chainsense.identity._address import address_bytes, checksum_from_bytes
from chainsense.identity.reading import Reading
from chainsense.provenance.blockproof import (
    BlockEvidenceError,
    decode_header,
    receipt_from_proof,
    root_anchored_logs,
)
from chainsense.provenance.merkle import leaf_of, process_proof
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import AnchorRef, DomainRef, ProofDocument, SchemaRef

__all__ = [
    "OFFLINE_CHECKS",
    "ONCHAIN_CHECKS",
    "Check",
    "Verdict",
    "block_checks",
    "contracts_check",
    "domain_check",
    "offline_checks",
    "path_check",
    "schema_check",
    "signature_check",
    "signer_of",
    "verify_offline",
    "walk_path",
]

OFFLINE_CHECKS = (
    "contracts", "schema", "domain", "signature", "leaf", "merkle-path", "header", "receipt",
    "block",
)  # fmt: skip
ONCHAIN_CHECKS = ("code", "device")


class Check(NamedTuple):
    """One named check: passed (``ok``), failed, or ``skipped`` (not run; the detail says why).

    A named tuple, not a dataclass: a bundle builds eight per proof."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every check in order. ``onchain`` says whether an RPC endpoint was asked."""

    checks: tuple[Check, ...]
    onchain: bool

    @property
    def ok(self) -> bool:
        """Valid: every check ran and passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the checks that ran and failed."""
        return tuple(c.name for c in self.checks if not c.ok and not c.skipped)

    @property
    def unchecked(self) -> tuple[str, ...]:
        """Names of the checks that did not run."""
        return tuple(c.name for c in self.checks if c.skipped)

    @property
    def status(self) -> str:
        """``valid``, ``invalid`` (a check failed) or ``incomplete`` (none failed, some did not
        run: the contracts were not pinned or the block hash is not trusted)."""
        return "valid" if self.ok else "invalid" if self.failed else "incomplete"

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "onchain": self.onchain,
            "failed": list(self.failed),
            "unchecked": list(self.unchecked),
            "checks": [c.to_json() for c in self.checks],
        }


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _short(value: bytes) -> str:
    text = value.hex()
    return f"0x{text[:8]}…{text[-6:]}"


# --- offline ------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _schema_id(name: str, version: int, metrics: tuple[tuple[str, str, int], ...]) -> bytes:
    return schema_id(name, version, metrics)


_SCHEMA_BLOCKS: dict[int, tuple[SchemaRef, tuple[bool, str | None, str]]] = {}
"""The schema block's own verdict (whether it can be hashed at all; ``None`` when its id is
the hash of its contents, else the problem) and the metrics' description, by the identity of
the parsed block: the parser hands out one object for the same block texts, and the entry
holds that object, so an identity match is the same immutable block."""


def _schema_block(schema: SchemaRef) -> tuple[bool, str | None, str]:
    found = _SCHEMA_BLOCKS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    committed = tuple((m.name, m.unit, m.scale) for m in schema.metrics)
    problem: str | None = None
    hashable = True
    try:
        computed = _schema_id(schema.name, schema.version, committed)
    except ValueError as exc:
        hashable, problem = False, str(exc)
    else:
        if computed != schema.id:
            problem = (
                f"schema.id {_short(schema.id)} is not the hash of the schema block "
                f"({_short(computed)}): the name, version, a unit or a scale was altered"
            )
    units = ", ".join(f"{m.name} {m.unit} 10^-{m.scale}" for m in schema.metrics)
    if len(_SCHEMA_BLOCKS) >= 256:
        _SCHEMA_BLOCKS.clear()
    verdict = (hashable, problem, units)
    _SCHEMA_BLOCKS[id(schema)] = (schema, verdict)
    return verdict


def _check_schema(doc: ProofDocument) -> Check:
    return schema_check(doc.schema, doc.reading)


def schema_check(schema: SchemaRef, reading: Reading) -> Check:
    """``schema``: the block's id is the hash of its contents, the reading names it, and there
    is one value per metric."""
    hashable, problem, units = _schema_block(schema)
    if not hashable:
        return Check("schema", False, str(problem))
    problems = [] if problem is None else [problem]
    if reading.schema != schema.id:
        problems.append(f"reading.schema {_short(reading.schema)} is not schema.id")
    if len(reading.values) != len(schema.metrics):
        problems.append(
            f"{len(reading.values)} values for the {len(schema.metrics)} metrics of {schema.name}"
        )
    if problems:
        return Check("schema", False, "; ".join(problems))
    return Check("schema", True, f"{schema.name} v{schema.version} ({units}): id recomputed")


def _check_domain(doc: ProofDocument) -> Check:
    return domain_check(doc.domain, doc.anchor.chain_id)


def domain_check(domain: DomainRef, anchor_chain_id: int) -> Check:
    """``domain``: ChainSense v1 on the anchor's chain."""
    problems = []
    if (domain.name, domain.version) != (DOMAIN_NAME, DOMAIN_VERSION):
        problems.append(
            f"domain is {domain.name!r} version {domain.version!r}, "
            f"not {DOMAIN_NAME!r} version {DOMAIN_VERSION!r}"
        )
    if domain.chain_id != anchor_chain_id:
        problems.append(
            f"domain.chain_id {domain.chain_id} is not anchor.chain_id {anchor_chain_id}"
        )
    if problems:
        return Check("domain", False, "; ".join(problems))
    return Check(
        "domain",
        True,
        f"{DOMAIN_NAME} v{DOMAIN_VERSION} on chain {domain.chain_id}, "
        f"registry {domain.verifying_contract}",
    )


@lru_cache(maxsize=64)
def _verifier(chain_id: int, registry: str) -> ReadingVerifier:
    return ReadingVerifier(chain_id, registry)


def _check_signature(doc: ProofDocument, computed: bytes) -> Check:
    return signature_check(doc.domain, doc.reading.device, doc.signature, computed)


def signer_of(domain: DomainRef, signature: bytes, computed: bytes) -> bytes | IdentityError:
    """The 20 bytes ``signature`` recovers over ``computed`` (hashStruct) in ``domain``'s
    EIP-712 domain, or why none can be recovered."""
    try:
        verifier = _verifier(domain.chain_id, domain.verifying_contract)
        return verifier.recover_struct_bytes(computed, signature)
    except IdentityError as exc:
        return exc


def signature_check(
    domain: DomainRef,
    device: str,
    signature: bytes,
    computed: bytes,
    signer: bytes | IdentityError | None = None,
) -> Check:
    """``signature``: it recovers ``device`` (``signer``: :func:`signer_of`, if known)."""
    if signer is None:
        signer = signer_of(domain, signature, computed)
    if isinstance(signer, IdentityError):
        return Check("signature", False, str(signer))
    if signer != address_bytes(device):
        return Check(
            "signature",
            False,
            f"recovers {checksum_from_bytes(signer)}, not reading.device {device}: "
            "the reading, the signature or the domain was altered",
        )
    return Check("signature", True, f"recovers reading.device {device}")


def _check_leaf(doc: ProofDocument, computed: bytes) -> Check:
    if computed != doc.struct_hash:
        return Check(
            "leaf",
            False,
            f"hashStruct(reading) is {_short(computed)}, the document says "
            f"struct_hash {_short(doc.struct_hash)}: the reading or struct_hash was altered",
        )
    leaf = leaf_of(computed)
    if leaf != doc.leaf:
        return Check(
            "leaf",
            False,
            f"the reading's leaf is {_short(leaf)}, the document says {_short(doc.leaf)}",
        )
    return Check("leaf", True, f"leaf {_short(leaf)} = keccak256(keccak256(hashStruct(reading)))")


_NODES: dict[bytes, bytes] = {}
"""Merkle node hashes already computed, by their 64 input bytes (see ``process_proof``)."""
_NODES_MAX = 1 << 15


def _check_path(doc: ProofDocument) -> Check:
    return path_check(doc.proof, doc.leaf, doc.root)


def walk_path(proof: tuple[bytes, ...], leaf: bytes) -> bytes:
    """Where ``proof`` leads from ``leaf``, through the table of node hashes already made."""
    if len(_NODES) > _NODES_MAX:
        _NODES.clear()
    return process_proof(proof, leaf, _NODES)


def path_check(
    proof: tuple[bytes, ...], leaf: bytes, root: bytes, reached: bytes | None = None
) -> Check:
    """``merkle-path``: the path leads from the leaf to the root (``reached``: where it led,
    if known)."""
    if reached is None:
        reached = walk_path(proof, leaf)
    steps = len(proof)
    if reached != root:
        return Check(
            "merkle-path",
            False,
            f"the {steps}-step path from the leaf leads to {_short(reached)}, "
            f"not to the root {_short(root)}",
        )
    return Check("merkle-path", True, f"{steps}-step path leads from the leaf to the root")


def _check_contracts(doc: ProofDocument, pins: Pins | None) -> Check:
    return contracts_check(doc.domain, doc.anchor, pins)


def contracts_check(domain: DomainRef, anchor: AnchorRef, pins: Pins | None) -> Check:
    """``contracts``: the domain and the anchor name the pinned chain and contracts."""
    if pins is None:
        return Check(
            "contracts",
            False,
            "not pinned: the proof names its own contracts, and anyone can deploy copies; "
            "pass the expected deployment (--deployment FILE, or --registry/--anchor)",
            skipped=True,
        )
    if (
        anchor.chain_id == domain.chain_id == pins.chain_id
        and domain.verifying_contract == pins.registry
        and anchor.contract == pins.anchor
    ):  # the parser gives EIP-55 forms: equal strings are equal addresses
        return _pinned(pins)
    wrong = pins.mismatches(
        chain_ids={"anchor.chain_id": anchor.chain_id, "domain.chain_id": domain.chain_id},
        registry=domain.verifying_contract,
        anchor=anchor.contract,
    )
    if wrong:
        return Check("contracts", False, "; ".join(wrong))
    return _pinned(pins)


@lru_cache(maxsize=16)
def _pinned(pins: Pins) -> Check:
    return Check("contracts", True, f"the pinned deployment: {pins.describe()}")


def block_checks(anchor: AnchorRef, root: bytes) -> tuple[Check, Check]:
    """``header`` and ``receipt``: the block evidence ties ``root``'s anchor to the block hash
    (both remembered for the last blocks: they are the same for every proof of a batch)."""
    a = anchor
    header, receipts_root = _header(a.header_rlp, a.block_hash, a.block_number, a.block_time)
    receipt = _receipt(receipts_root, a.tx_index, a.receipt_proof, a.contract, root, a.block_time)
    return header, receipt


# The block evidence is the same for every proof of a batch: its checks are pure functions of
# their arguments, remembered for the last few blocks (a bundle's proofs come batch by batch).


@lru_cache(maxsize=64)
def _header(
    header_rlp: bytes, block_hash: bytes, block_number: int, block_time: int
) -> tuple[Check, bytes | None]:
    try:
        header = decode_header(header_rlp)
    except BlockEvidenceError as exc:
        return Check("header", False, str(exc)), None
    problems = []
    if header.hash != block_hash:
        problems.append(
            f"keccak256(header_rlp) is {_short(header.hash)}, not block_hash "
            f"{_short(block_hash)}: the header was altered"
        )
    if header.number != block_number:
        problems.append(f"the header is block {header.number}, not {block_number}")
    if header.timestamp != block_time:
        problems.append(f"the header's time is {header.timestamp}, not {block_time}")
    if problems:
        return Check("header", False, "; ".join(problems)), None
    return (
        Check(
            "header",
            True,
            f"header of block {header.number} hashes to block_hash {_short(header.hash)}, "
            f"time {header.timestamp}",
        ),
        header.receipts_root,
    )


@lru_cache(maxsize=256)
def _receipt(
    receipts_root: bytes | None,
    tx_index: int,
    nodes: tuple[bytes, ...],
    contract_address: str,
    root: bytes,
    block_time: int,
) -> Check:
    if receipts_root is None:
        return Check("receipt", False, "not checked: the header does not hold", skipped=True)
    try:
        receipt = receipt_from_proof(receipts_root, tx_index, nodes)
        status, logs = root_anchored_logs(receipt)
    except BlockEvidenceError as exc:
        return Check("receipt", False, str(exc))
    if status != 1:
        return Check("receipt", False, f"transaction {tx_index} of the block reverted")
    contract = bytes.fromhex(contract_address[2:])
    mine = [log for log in logs if log.contract == contract and log.root == root]
    if not mine:
        return Check(
            "receipt",
            False,
            f"receipt {tx_index} has no RootAnchored log for root {_short(root)} "
            f"from {contract_address}",
        )
    if mine[0].block_time != block_time:
        return Check(
            "receipt", False, f"RootAnchored says block time {mine[0].block_time}, not {block_time}"
        )
    return Check(
        "receipt",
        True,
        f"receipt {tx_index} under the header's receiptsRoot ({len(nodes)} trie nodes): "
        f"RootAnchored for the root from {contract_address}",
    )


def _check_trusted_block(doc: ProofDocument, trusted: Collection[bytes] | None) -> Check:
    block_hash = doc.anchor.block_hash
    if trusted is None:
        return Check(
            "block",
            False,
            "not checked: no trusted block hash (pass --block-hash HASH, a file of them, or "
            "--rpc URL)",
            skipped=True,
        )
    if block_hash not in trusted:
        return Check(
            "block",
            False,
            f"block_hash {_hex(block_hash)} of block {doc.anchor.block_number} is not among the "
            f"{len(trusted)} trusted block hash(es)",
        )
    return Check("block", True, f"block_hash {_short(block_hash)} is a trusted block hash")


def offline_checks(doc: ProofDocument, pins: Pins | None) -> list[Check]:
    """Every check but ``block``: the whole path from the reading to the block hash."""
    computed = struct_hash(doc.reading)  # hashStruct(reading), as signed and as committed to
    header, receipt = block_checks(doc.anchor, doc.root)
    return [
        _check_contracts(doc, pins),
        _check_schema(doc),
        _check_domain(doc),
        _check_signature(doc, computed),
        _check_leaf(doc, computed),
        _check_path(doc),
        header,
        receipt,
    ]


def verify_offline(
    doc: ProofDocument,
    *,
    pins: Pins | None = None,
    trusted_blocks: Collection[bytes] | None = None,
) -> Verdict:
    """Check a proof with no network: against the pinned deployment and the trusted block
    hashes. Without either, those checks are reported as not run and the verdict is
    incomplete, never valid."""
    checks = offline_checks(doc, pins)
    checks.append(_check_trusted_block(doc, trusted_blocks))
    return Verdict(tuple(checks), onchain=False)
