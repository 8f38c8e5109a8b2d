"""Verification anyone can run: a proof document, and at most an RPC endpoint of its chain.

Nothing here reads the issuing platform's store or deployment records: a third party who
distrusts the operator checks the document against cryptography (offline) and against the chain
itself (with any JSON-RPC endpoint).

The checks, by name (the names are stable; the CLI and ``POST /v1/verify`` show them):

offline
    ``schema``       the carried schema is consistent: ``schema.id = keccak256(schema.name)``,
                     ``reading.schema = schema.id``, one value per metric (ok when no schema is
                     carried: nothing to compare)
    ``domain``       the EIP-712 domain is ChainSense v1, on the anchor's chain id
    ``signature``    the signature recovers ``reading.device`` in that domain
    ``leaf``         ``structHash = hashStruct(reading)`` and ``leaf = keccak256(keccak256(
                     structHash))``: the leaf commits to this very reading
    ``merkle-path``  the path leads from the leaf to the root (OpenZeppelin ``MerkleProof``)
on-chain
    ``chain``        the endpoint answers, and its chain id is ``anchor.chainId`` and
                     ``domain.chainId``
    ``anchor``       ``ReadingAnchor.anchorOf(root)`` at ``anchor.contract``: anchored, at
                     ``anchor.blockNumber``, with ``anchor.blockTime``
    ``transaction``  ``anchor.txHash`` succeeded in that block and emitted ``RootAnchored`` for
                     that root from that contract, with that block time
    ``block``        the block is still the canonical one the transaction was mined in, and has
                     that time
    ``device``       ``DeviceRegistry.verifyReadingAt(reading, signature, anchor block time)`` at
                     ``domain.verifyingContract``: the key was registered and active then (a
                     device revoked later keeps its old readings verifiable)

A check that cannot run because one it depends on failed is reported as skipped (``ok`` false,
``skipped`` true), so the failure is named once, where it happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from web3.exceptions import BlockNotFound, TransactionNotFound, Web3Exception

from chainsense.chain.client import ChainClient
from chainsense.errors import ChainSenseError, ChainUnavailableError
from chainsense.identity import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    IdentityError,
    ReadingVerifier,
    keccak256,
    schema_id,
    struct_hash,
)
from chainsense.provenance.merkle import leaf_of, process_proof
from chainsense.provenance.proof import ProofDocument

__all__ = [
    "OFFLINE_CHECKS",
    "ONCHAIN_CHECKS",
    "ROOT_ANCHORED_TOPIC",
    "Check",
    "Verdict",
    "verify_offline",
    "verify_onchain",
]

T = TypeVar("T")

OFFLINE_CHECKS = ("schema", "domain", "signature", "leaf", "merkle-path")
ONCHAIN_CHECKS = ("chain", "anchor", "transaction", "block", "device")

ROOT_ANCHORED_TOPIC = keccak256(b"RootAnchored(bytes32,bytes32,uint32,address,uint64)")
_RPC_ERRORS = (ChainSenseError, Web3Exception, ValueError, TypeError)


@dataclass(frozen=True, slots=True)
class Check:
    """One named check: passed (``ok``), failed, or ``skipped`` because a check it needs failed."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every check in order. ``onchain`` says whether the anchor was checked against a chain."""

    checks: tuple[Check, ...]
    onchain: bool

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the checks that ran and failed (skipped ones are not counted)."""
        return tuple(c.name for c in self.checks if not c.ok and not c.skipped)

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "onchain": self.onchain,
            "failed": list(self.failed),
            "checks": [c.to_json() for c in self.checks],
        }


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _short(value: bytes) -> str:
    text = value.hex()
    return f"0x{text[:8]}…{text[-6:]}"


# --- offline ------------------------------------------------------------------------------------


def _check_schema(doc: ProofDocument) -> Check:
    schema = doc.schema
    if schema is None:
        return Check("schema", True, "no schema in the document: the schema id is not interpreted")
    problems = []
    if schema_id(schema.name) != schema.id:
        problems.append(f"schema.id {_short(schema.id)} is not keccak256({schema.name!r})")
    if doc.reading.schema != schema.id:
        problems.append(f"reading.schema {_short(doc.reading.schema)} is not schema.id")
    if len(doc.reading.values) != len(schema.metrics):
        problems.append(
            f"{len(doc.reading.values)} values for the {len(schema.metrics)} metrics of "
            f"{schema.name}"
        )
    if problems:
        return Check("schema", False, "; ".join(problems))
    return Check(
        "schema", True, f"{schema.name}: {len(schema.metrics)} values, id = keccak256(name)"
    )


def _check_domain(doc: ProofDocument) -> Check:
    domain = doc.domain
    problems = []
    if (domain.name, domain.version) != (DOMAIN_NAME, DOMAIN_VERSION):
        problems.append(
            f"domain is {domain.name!r} version {domain.version!r}, "
            f"not {DOMAIN_NAME!r} version {DOMAIN_VERSION!r}"
        )
    if domain.chain_id != doc.anchor.chain_id:
        problems.append(
            f"domain.chainId {domain.chain_id} is not anchor.chainId {doc.anchor.chain_id}"
        )
    if problems:
        return Check("domain", False, "; ".join(problems))
    return Check(
        "domain",
        True,
        f"{DOMAIN_NAME} v{DOMAIN_VERSION} on chain {domain.chain_id}, "
        f"registry {domain.verifying_contract}",
    )


def _check_signature(doc: ProofDocument, computed: bytes) -> Check:
    device = doc.reading.device
    try:
        verifier = ReadingVerifier(doc.domain.chain_id, doc.domain.verifying_contract)
        signer = verifier.recover_struct(computed, doc.signature)
    except IdentityError as exc:
        return Check("signature", False, str(exc))
    if signer != device:
        return Check(
            "signature",
            False,
            f"recovers {signer}, not reading.device {device}: "
            "the reading, the signature or the domain was altered",
        )
    return Check("signature", True, f"recovers reading.device {device}")


def _check_leaf(doc: ProofDocument, computed: bytes) -> Check:
    if computed != doc.struct_hash:
        return Check(
            "leaf",
            False,
            f"hashStruct(reading) is {_short(computed)}, the document says "
            f"structHash {_short(doc.struct_hash)}: the reading or structHash was altered",
        )
    leaf = leaf_of(computed)
    if leaf != doc.leaf:
        return Check(
            "leaf",
            False,
            f"the reading's leaf is {_short(leaf)}, the document says {_short(doc.leaf)}",
        )
    return Check("leaf", True, f"leaf {_short(leaf)} = keccak256(keccak256(hashStruct(reading)))")


def _check_path(doc: ProofDocument) -> Check:
    reached = process_proof(doc.proof, doc.leaf)
    steps = len(doc.proof)
    if reached != doc.root:
        return Check(
            "merkle-path",
            False,
            f"the {steps}-step path from the leaf leads to {_short(reached)}, "
            f"not to the root {_short(doc.root)}",
        )
    return Check("merkle-path", True, f"{steps}-step path leads from the leaf to the root")


def _offline(doc: ProofDocument) -> list[Check]:
    computed = struct_hash(doc.reading)  # hashStruct(reading), as signed and as committed to
    return [
        _check_schema(doc),
        _check_domain(doc),
        _check_signature(doc, computed),
        _check_leaf(doc, computed),
        _check_path(doc),
    ]


def verify_offline(doc: ProofDocument) -> Verdict:
    """Check what needs no chain: schema, domain, signature, leaf and Merkle path."""
    return Verdict(tuple(_offline(doc)), onchain=False)


# --- on-chain -----------------------------------------------------------------------------------


async def verify_onchain(
    doc: ProofDocument, rpc: ChainClient | str, *, timeout: float = 10.0
) -> Verdict:
    """Every offline check, then the anchor and the device against the chain at ``rpc`` (an open
    :class:`ChainClient`, or a JSON-RPC URL: a client is opened and closed here).

    Never raises for a chain problem: an unreachable endpoint is a failed ``chain`` check.
    """
    checks = _offline(doc)
    if isinstance(rpc, ChainClient):
        checks += await _onchain(doc, rpc)
        return Verdict(tuple(checks), onchain=True)
    try:
        client = ChainClient(rpc, timeout=timeout, retries=1, backoff=0.1)
    except _RPC_ERRORS as exc:
        checks += _unreachable(rpc, str(exc))
        return Verdict(tuple(checks), onchain=True)
    try:
        checks += await _onchain(doc, client)
    finally:
        await client.close()
    return Verdict(tuple(checks), onchain=True)


def _skip_rest(after: str, reason: str) -> list[Check]:
    rest = ONCHAIN_CHECKS[ONCHAIN_CHECKS.index(after) + 1 :]
    return [Check(name, False, f"not checked: {reason}", skipped=True) for name in rest]


def _unreachable(url: str, reason: str) -> list[Check]:
    return [
        Check("chain", False, f"the RPC endpoint {url} does not answer: {reason}"),
        *_skip_rest("chain", "no chain to check against"),
    ]


async def _guard(name: str, run: Callable[[], Awaitable[Check]]) -> Check:
    """Run one on-chain check; an RPC failure fails that check, with the reason."""
    try:
        return await run()
    except ChainUnavailableError as exc:
        return Check(name, False, f"the RPC endpoint stopped answering: {exc.reason}")
    except _RPC_ERRORS as exc:
        return Check(name, False, f"the chain query failed: {type(exc).__name__}: {exc}")


async def _onchain(doc: ProofDocument, client: ChainClient) -> list[Check]:
    try:
        chain_id = await client.chain_id()
    except ChainUnavailableError as exc:
        return _unreachable(client.rpc_url, exc.reason)
    except _RPC_ERRORS as exc:
        return _unreachable(client.rpc_url, f"{type(exc).__name__}: {exc}")
    wrong = [
        f"{label} {value}"
        for label, value in (
            ("anchor.chainId", doc.anchor.chain_id),
            ("domain.chainId", doc.domain.chain_id),
        )
        if value != chain_id
    ]
    if wrong:
        return [
            Check("chain", False, f"the endpoint serves chain {chain_id}, not {', '.join(wrong)}"),
            *_skip_rest("chain", "the endpoint serves another chain"),
        ]
    checks = [Check("chain", True, f"the endpoint serves chain {chain_id}")]
    state = _Anchored()
    checks.append(await _guard("anchor", lambda: _check_anchor(doc, client, state)))
    checks.append(await _guard("transaction", lambda: _check_transaction(doc, client, state)))
    checks.append(await _guard("block", lambda: _check_block(doc, client, state)))
    checks.append(await _guard("device", lambda: _check_device(doc, client, state)))
    return checks


@dataclass
class _Anchored:
    """What the chain said, shared between the on-chain checks."""

    block_time: int | None = None
    tx_block_hash: bytes | None = None


async def _has_code(client: ChainClient, address: str) -> bool:
    return bool(await client.get_code(address))


async def _check_anchor(doc: ProofDocument, client: ChainClient, state: _Anchored) -> Check:
    anchor = doc.anchor
    if not await _has_code(client, anchor.contract):
        return Check("anchor", False, f"no contract at anchor.contract {anchor.contract}")
    contract = client.contract("ReadingAnchor", anchor.contract)
    count, block_number, block_time = await client.call(contract.functions.anchorOf(doc.root))
    if block_time == 0:
        return Check(
            "anchor", False, f"the root {_short(doc.root)} is not anchored in {anchor.contract}"
        )
    state.block_time = int(block_time)
    problems = []
    if block_number != anchor.block_number:
        problems.append(f"anchored at block {block_number}, not {anchor.block_number}")
    if block_time != anchor.block_time:
        problems.append(f"anchored at time {block_time}, not {anchor.block_time}")
    if problems:
        return Check("anchor", False, "the root is anchored, but " + " and ".join(problems))
    return Check(
        "anchor",
        True,
        f"root anchored in {anchor.contract} at block {block_number}, time {block_time} "
        f"({count} readings in the batch)",
    )


async def _check_transaction(doc: ProofDocument, client: ChainClient, state: _Anchored) -> Check:
    anchor = doc.anchor
    tx = _hex(anchor.tx_hash)
    try:
        receipt = await client.rpc(lambda: client.w3.eth.get_transaction_receipt(tx))  # type: ignore[arg-type]
    except TransactionNotFound:
        return Check("transaction", False, f"no transaction {_short(anchor.tx_hash)} on this chain")
    if receipt["status"] != 1:
        return Check("transaction", False, f"transaction {_short(anchor.tx_hash)} reverted")
    if receipt["blockNumber"] != anchor.block_number:
        return Check(
            "transaction",
            False,
            f"the transaction is in block {receipt['blockNumber']}, not {anchor.block_number}",
        )
    state.tx_block_hash = bytes(receipt["blockHash"])
    events = [
        log
        for log in receipt["logs"]
        if log["address"].lower() == anchor.contract.lower()
        and len(log["topics"]) >= 2
        and bytes(log["topics"][0]) == ROOT_ANCHORED_TOPIC
        and bytes(log["topics"][1]) == doc.root
    ]
    if not events:
        return Check(
            "transaction",
            False,
            f"the transaction emitted no RootAnchored for root {_short(doc.root)} "
            f"from {anchor.contract}",
        )
    data = bytes(events[0]["data"])
    event_time = int.from_bytes(data[32:64]) if len(data) >= 64 else None
    if event_time != anchor.block_time:
        return Check(
            "transaction",
            False,
            f"RootAnchored says block time {event_time}, not {anchor.block_time}",
        )
    return Check(
        "transaction",
        True,
        f"{_short(anchor.tx_hash)} in block {anchor.block_number} emitted RootAnchored for the "
        "root",
    )


async def _check_block(doc: ProofDocument, client: ChainClient, state: _Anchored) -> Check:
    anchor = doc.anchor
    if state.tx_block_hash is None:
        return Check(
            "block", False, "not checked: the transaction is not in that block", skipped=True
        )
    try:
        block = await client.rpc(lambda: client.w3.eth.get_block(anchor.block_number))
    except BlockNotFound:
        return Check("block", False, f"block {anchor.block_number} does not exist (yet)")
    block_hash = bytes(block["hash"] or b"")
    if block_hash != state.tx_block_hash:
        return Check(
            "block",
            False,
            f"the transaction was mined in block {_short(state.tx_block_hash)}, but the "
            f"canonical block {anchor.block_number} is {_short(block_hash)} (reorganised)",
        )
    if block["timestamp"] != anchor.block_time:
        return Check(
            "block",
            False,
            f"block {anchor.block_number} has time {block['timestamp']}, not {anchor.block_time}",
        )
    confirmations = await client.block_number() - anchor.block_number + 1
    return Check(
        "block",
        True,
        f"block {anchor.block_number} is canonical, time {block['timestamp']} "
        f"({confirmations} confirmation{'' if confirmations == 1 else 's'})",
    )


async def _check_device(doc: ProofDocument, client: ChainClient, state: _Anchored) -> Check:
    registry_address = doc.domain.verifying_contract
    if not await _has_code(client, registry_address):
        return Check("device", False, f"no contract at domain.verifyingContract {registry_address}")
    at = state.block_time if state.block_time is not None else doc.anchor.block_time
    if at >= 2**64:
        return Check("device", False, f"anchor time {at} does not fit uint64")
    reading = doc.reading
    registry = client.contract("DeviceRegistry", registry_address)
    struct = (reading.device, reading.seq, reading.timestamp, reading.schema, list(reading.values))
    accepted = await client.call(registry.functions.verifyReadingAt(struct, doc.signature, at))
    if accepted:
        return Check(
            "device",
            True,
            f"the registry accepts the signature of {reading.device}, "
            f"registered and active at the anchor time {at}",
        )
    key_device, active_from, active_until = await client.call(
        registry.functions.keyOf(reading.device)
    )
    if int(key_device, 16) == 0:
        why = f"{reading.device} is not a key registered in {registry_address}"
    elif at < active_from:
        why = f"{reading.device} was registered at {active_from}, after the anchor time {at}"
    elif active_until and at >= active_until:
        why = f"{reading.device} was revoked or rotated at {active_until}, before {at}"
    else:
        why = "the registry does not accept the signature"
    return Check("device", False, why)
