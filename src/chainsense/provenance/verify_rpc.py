"""Verification with an RPC endpoint of the proof's chain: the offline checks
(:mod:`chainsense.provenance.verify`), then what only the chain can say.

``block``   the canonical block at ``anchor.block_number`` has ``anchor.block_hash`` (with its
            number of confirmations): the only thing the proof's path needs from a node
``code``    the runtime code at the pinned addresses has the pinned code hashes
``device``  ``DeviceRegistry.verifyReadingAt(reading, signature, block time)`` at the pinned
            registry: the key was registered and active at anchor time

Never raises for a chain problem: an unreachable endpoint fails ``block`` and skips the rest.
"""

from __future__ import annotations

from typing import Any

from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from chainsense.chain.client import ChainClient
from chainsense.errors import ChainSenseError
from chainsense.identity import keccak256
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument
from chainsense.provenance.verify import Check, Verdict, offline_checks

__all__ = ["verify_onchain"]

_RPC_ERRORS = (ChainSenseError, Web3Exception, ValueError, TypeError, KeyError, OSError)


def _short(value: bytes) -> str:
    text = value.hex()
    return f"0x{text[:8]}…{text[-6:]}"


async def verify_onchain(
    doc: ProofDocument,
    rpc: ChainClient | str,
    *,
    pins: Pins | None = None,
    timeout: float = 10.0,
) -> Verdict:
    """Every offline check, then ``block``, ``code`` and ``device`` against ``rpc`` (an open
    :class:`ChainClient`, or a JSON-RPC URL: a client is opened and closed here)."""
    checks = offline_checks(doc, pins)
    if isinstance(rpc, ChainClient):
        checks += await _onchain(doc, rpc, pins)
        return Verdict(tuple(checks), onchain=True)
    try:
        client = ChainClient(rpc, timeout=timeout, retries=1, backoff=0.1)
    except _RPC_ERRORS as exc:
        checks += _unreachable(rpc, f"{type(exc).__name__}: {exc}")
        return Verdict(tuple(checks), onchain=True)
    try:
        checks += await _onchain(doc, client, pins)
    finally:
        await client.close()
    return Verdict(tuple(checks), onchain=True)


def _unreachable(url: str, reason: str) -> list[Check]:
    return [
        Check("block", False, f"the RPC endpoint {url} does not answer: {reason}"),
        Check("code", False, "not checked: no chain to check against", skipped=True),
        Check("device", False, "not checked: no chain to check against", skipped=True),
    ]


async def _request(client: ChainClient, method: str, *params: Any) -> Any:
    response = await client.w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in response:
        raise ValueError(f"{method}: {response['error']}")
    return response["result"]


async def _onchain(doc: ProofDocument, client: ChainClient, pins: Pins | None) -> list[Check]:
    try:
        chain_id = await client.chain_id()
    except _RPC_ERRORS as exc:
        return _unreachable(client.rpc_url, f"{type(exc).__name__}: {exc}")
    if chain_id != doc.anchor.chain_id:
        return [
            Check(
                "block", False, f"the endpoint serves chain {chain_id}, not {doc.anchor.chain_id}"
            ),
            Check("code", False, "not checked: another chain", skipped=True),
            Check("device", False, "not checked: another chain", skipped=True),
        ]
    return [
        await _guard("block", _check_block(doc, client)),
        await _guard("code", _check_code(client, pins)),
        await _guard("device", _check_device(doc, client, pins)),
    ]


async def _guard(name: str, run: Any) -> Check:
    try:
        result: Check = await run
        return result
    except _RPC_ERRORS as exc:
        return Check(name, False, f"the chain query failed: {type(exc).__name__}: {exc}")


async def _check_block(doc: ProofDocument, client: ChainClient) -> Check:
    anchor = doc.anchor
    block = await _request(client, "eth_getBlockByNumber", hex(anchor.block_number), False)
    if block is None:
        return Check("block", False, f"block {anchor.block_number} does not exist (yet)")
    canonical = bytes.fromhex(block["hash"][2:])
    if canonical != anchor.block_hash:
        return Check(
            "block",
            False,
            f"the canonical block {anchor.block_number} is {_short(canonical)}, not block_hash "
            f"{_short(anchor.block_hash)} (reorganised, or another chain)",
        )
    head = await client.block_number()
    confirmations = head - anchor.block_number + 1
    return Check(
        "block",
        True,
        f"block_hash is the canonical block {anchor.block_number} "
        f"({confirmations} confirmation{'' if confirmations == 1 else 's'})",
    )


async def _check_code(client: ChainClient, pins: Pins | None) -> Check:
    if pins is None:
        return Check("code", False, "not checked: no pinned deployment", skipped=True)
    pairs = (
        ("DeviceRegistry", pins.registry, pins.registry_code_hash),
        ("ReadingAnchor", pins.anchor, pins.anchor_code_hash),
    )
    problems, seen = [], []
    for name, address, expected in pairs:
        code = await client.get_code(address)
        if not code:
            problems.append(f"no code at the pinned {name} {address}")
            continue
        actual = keccak256(code)
        if expected is not None and actual != expected:
            problems.append(
                f"the code at {name} {address} hashes to {_short(actual)}, not the pinned "
                f"{_short(expected)}"
            )
        seen.append(name)
    if problems:
        return Check("code", False, "; ".join(problems))
    if pins.registry_code_hash is None or pins.anchor_code_hash is None:
        return Check("code", True, "code present at both pinned addresses (no code hash pinned)")
    return Check("code", True, "the runtime code at both pinned addresses has the pinned hash")


async def _check_device(doc: ProofDocument, client: ChainClient, pins: Pins | None) -> Check:
    """Asked of the pinned registry (the proof's own only when nothing is pinned)."""
    registry_address = pins.registry if pins is not None else doc.domain.verifying_contract
    if not await client.get_code(registry_address):
        return Check("device", False, f"no contract at the DeviceRegistry {registry_address}")
    at = doc.anchor.block_time
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
