"""The chain side of checking a bundle: each distinct block asked once (is its hash canonical, how
many confirmations), the pinned contracts' code once, each distinct device's key record once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from chainsense.chain.client import ChainClient
from chainsense.provenance.bundle import BlockJudge, DeviceJudge, distinct_blocks
from chainsense.provenance.pins import Pins
from chainsense.provenance.verify import Check
from chainsense.provenance.verify_rpc import _check_code, _request

__all__ = ["ChainFacts", "chain_facts"]


@dataclass
class ChainFacts:
    canonical: dict[int, bytes] = field(default_factory=dict)
    head: int = 0
    keys: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """device -> (registered: 0/1, active from, active until)."""
    code: Check | None = None
    error: str | None = None

    def block_judge(self) -> BlockJudge:
        def judge(number: int, block_hash: bytes) -> Check:
            if self.error is not None:
                return Check("block", False, f"the RPC endpoint failed: {self.error}")
            canonical = self.canonical.get(number)
            if canonical is None:
                return Check("block", False, f"block {number} does not exist (yet)")
            if canonical != block_hash:
                return Check("block", False, f"block_hash is not the canonical block {number}")
            return Check("block", True, f"canonical ({self.head - number + 1} confirmations)")

        return judge

    def device_judge(self) -> DeviceJudge:
        def judge(device: str, at: int) -> Check | None:
            if self.error is not None:
                return Check("device", False, "not checked: the RPC endpoint failed", skipped=True)
            registered, start, until = self.keys.get(device.lower(), (0, 0, 0))
            if not registered:
                return Check("device", False, f"{device} is not a registered key")
            if at < start or (until and at >= until):
                return Check("device", False, f"{device} was not active at the anchor time {at}")
            return Check("device", True, "registered and active at the anchor time")

        return judge


def _devices(lines: Sequence[str]) -> set[str]:
    found = set()
    for line in lines:
        try:
            obj = json.loads(line)
            found.add(str(obj.get("proof", obj)["reading"]["device"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


async def chain_facts(
    rpc: str, lines: Sequence[str], pins: Pins | None, timeout: float
) -> ChainFacts:
    """Ask the chain what the bundle's proofs need, once per distinct block and device."""
    facts = ChainFacts()
    client = ChainClient(rpc, timeout=timeout, retries=1, backoff=0.1)
    try:
        for number in sorted(distinct_blocks(lines)):
            block = await _request(client, "eth_getBlockByNumber", hex(number), False)
            if block is not None:
                facts.canonical[number] = bytes.fromhex(block["hash"][2:])
        facts.head = await client.block_number()
        facts.code = await _check_code(client, pins)
        if pins is not None:
            registry = client.contract("DeviceRegistry", pins.registry)
            for device in sorted(_devices(lines)):
                key_device, start, until = await client.call(registry.functions.keyOf(device))
                facts.keys[device.lower()] = (int(int(key_device, 16) != 0), int(start), int(until))
    except Exception as exc:
        facts.error = f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()
    return facts
