"""Does a bundle hold every batch anchored in a period? An auditor's question the proofs alone
cannot answer: each proof shows that what it holds was anchored, not that nothing was left out.

The pinned ReadingAnchor is the list to compare with. Only its anchorers can anchor (the contract
grants ``ANCHORER_ROLE`` to the operator's keys), and every anchor emits one ``RootAnchored`` log.
So the roots logged by the pinned contract in the blocks of the period are every batch the
operator anchored then; a root among them that the bundle does not hold is a batch withheld.

The period is ``[since, until)`` in milliseconds since the epoch, as ``GET /v1/export/batches``
takes it; block times are whole seconds, so the blocks are those with ``since <= 1000 * time <
until``, found by bisection on the chain's block times (which never decrease).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chainsense.chain.client import ChainClient
from chainsense.provenance.blockproof import ROOT_ANCHORED_TOPIC
from chainsense.provenance.pins import Pins
from chainsense.provenance.verify import Check
from chainsense.provenance.verify_rpc import _RPC_ERRORS, _request

__all__ = ["Coverage", "bundle_roots", "check_coverage"]

LOG_SPAN = 5_000
"""Blocks per ``eth_getLogs`` request (hosted nodes cap the range a request may cover)."""


@dataclass
class Coverage:
    """What the chain says was anchored in the period, against what the bundle holds."""

    check: Check
    first_block: int | None = None
    last_block: int | None = None
    anchored: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)
    """(block number, root) of each batch anchored in the period and not in the bundle."""
    outside: int = 0
    """Batches in the bundle anchored outside the period (a note, not a failure)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.check.ok,
            "detail": self.check.detail,
            "blocks": [self.first_block, self.last_block],
            "anchored_in_period": self.anchored,
            "missing": [{"block": b, "root": r} for b, r in self.missing],
            "in_bundle_outside_period": self.outside,
        }


def bundle_roots(lines: Sequence[str]) -> set[str]:
    """The batch roots (0x-hex, lower case) a bundle holds: its batch lines' (v2), or each proof
    document's own (one document per line)."""
    roots = set()
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        batch = obj.get("batch")
        root = batch.get("root") if isinstance(batch, dict) else obj.get("root")
        if isinstance(root, str):
            roots.add(root.lower())
    return roots


async def _time_of(client: ChainClient, number: int, cache: dict[int, int]) -> int:
    if number not in cache:
        block = await _request(client, "eth_getBlockByNumber", hex(number), False)
        cache[number] = int(block["timestamp"], 16)
    return cache[number]


async def _first_at_or_after(client: ChainClient, head: int, ms: int, cache: dict[int, int]) -> int:
    """The first block whose time (ms) is >= ``ms``; ``head + 1`` if none is."""
    lo, hi = 0, head + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if await _time_of(client, mid, cache) * 1000 >= ms:
            hi = mid
        else:
            lo = mid + 1
    return lo


async def check_coverage(
    rpc: str,
    lines: Sequence[str],
    pins: Pins,
    *,
    since_ms: int | None,
    until_ms: int | None,
    timeout: float,
) -> Coverage:
    """Compare the roots the pinned ReadingAnchor logged in the period's blocks with the
    bundle's. Fails when the chain holds a root the bundle lacks, or cannot be asked."""
    held = bundle_roots(lines)
    client = ChainClient(rpc, timeout=timeout, retries=1, backoff=0.1)
    cache: dict[int, int] = {}
    try:
        head = await client.block_number()
        first = 0 if since_ms is None else await _first_at_or_after(client, head, since_ms, cache)
        last = head if until_ms is None else (
            await _first_at_or_after(client, head, until_ms, cache) - 1
        )  # fmt: skip
        found: list[tuple[int, str]] = []
        start = first
        while start <= last:
            end = min(last, start + LOG_SPAN - 1)
            logs = await _request(client, "eth_getLogs", {
                "address": pins.anchor,
                "topics": ["0x" + ROOT_ANCHORED_TOPIC.hex()],
                "fromBlock": hex(start),
                "toBlock": hex(end),
            })  # fmt: skip
            for log in logs:
                if log.get("removed"):
                    continue
                found.append((int(log["blockNumber"], 16), str(log["topics"][1]).lower()))
            start = end + 1
    except _RPC_ERRORS as exc:
        why = f"the chain query failed: {type(exc).__name__}: {exc}"
        return Coverage(Check("coverage", False, why))
    finally:
        await client.close()
    in_period = {root for _, root in found}
    missing = sorted((block, root) for block, root in found if root not in held)
    period = f"blocks {first}-{last}" if first <= last else "no block"
    if missing:
        detail = (
            f"{len(missing)} of the {len(in_period)} batches the pinned ReadingAnchor anchored "
            f"in the period ({period}) are not in the bundle"
        )
    else:
        detail = (
            f"the bundle holds all {len(in_period)} batches the pinned ReadingAnchor anchored "
            f"in the period ({period})"
        )
    return Coverage(
        Check("coverage", not missing, detail),
        first_block=first,
        last_block=last,
        anchored=len(in_period),
        missing=missing,
        outside=len(held - in_period),
    )
