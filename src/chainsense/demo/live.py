"""The demo fleet streaming live into a running platform (``make run``): the demo devices are
registered on first start, then each posts one signed reading per period through the platform's
ingest pipeline (the path POST /v1/readings takes), stamped with the wall clock."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any

from chainsense.demo.fleet import DemoFleet

if TYPE_CHECKING:
    from chainsense.platform import Platform

__all__ = ["live_values", "stream_fleet"]

log = logging.getLogger(__name__)


def live_values(name: str, t_ms: int, step: int, rng: random.Random) -> tuple[int, ...]:
    """A plausible reading of demo device ``name`` at ``t_ms`` (``step``: readings so far).

    >>> live_values("truck-1", 0, 0, random.Random(1))[1]
    650
    """
    minute = (t_ms // 60_000) % 60
    if name.startswith("truck"):
        # truck-2's compressor fails for 5 minutes every hour: out of its 2-8 Cel range
        breach = name == "truck-2" and 30 <= minute < 35
        return (round((9.0 if breach else 4.5) * 100 + rng.gauss(0, 8)), 650)
    if name.startswith("home"):
        hour = (t_ms % 86_400_000) / 3_600_000
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
        return (max(0, round(rng.gauss(1.5, 0.3))), round(sun * 2 * rng.uniform(0.8, 1.0)))
    if name.startswith("charger"):
        return (step * 3,)
    # the machine: vibration slowly rising (wear), bearing temperature following it
    wear = min(step / 20_000, 1.0)
    return (
        round((2.0 + 3.0 * wear + rng.gauss(0, 0.05)) * 1000),
        round((55.0 + 5.0 * wear + rng.gauss(0, 0.2)) * 100),
        round((12.0 + rng.gauss(0, 0.1)) * 1000),
    )


async def stream_fleet(platform: Platform, *, period: float = 1.0, seed: str = "live") -> None:
    """Register the demo fleet (once) and post a reading per device every ``period`` seconds,
    until cancelled."""
    chain = platform.chain
    fleet = DemoFleet.derive(seed)
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
    for name, key in fleet.keys.items():
        record = await platform.store.devices.get(key.address)
        if record is None:
            fn = registry.functions.register(key.address, chain.operator.address, bytes(32))
            await chain.operator.transact(fn)
            log.info("demo fleet: registered %s as %s", name, key.address)
        fleet.seqs[name] = record.last_seq if record is not None else 0
    await platform.registry.sync()
    rng = random.Random(seed)
    step = 0
    while True:
        now = int(time.time() * 1000)
        items: list[dict[str, Any]] = [
            fleet.reading(
                name, now, live_values(name, now, step, rng),
                chain_id=chain.deployment.chain_id, registry=registry.address,
            )
            for name in fleet.keys
        ]  # fmt: skip
        results = await platform.ingest.ingest(items)
        for result in results:
            if result.error is not None:
                log.warning("demo fleet reading refused: %s", result.error.problem())
        step += 1
        await asyncio.sleep(period)
