"""The anchorer against a slow node: a real Anvil behind :class:`SlowRpc`, readings stored at a
steady rate, the anchorer on its default policy. Used by test_anchorer_slow.py and by
``bench/anchor.py --slow-node``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainsense.chain import ChainClient, Signer
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.provenance.anchorer import Anchorer, AnchorPolicy
from chainsense.store import BatchState, Store
from tests.provenance._slow_rpc import SlowRpc
from tests.store._support import address, reading, register
from tests.support import DeployedChain


@dataclass
class SlowNodeRun:
    delay: float
    seconds: float
    sealed: int
    anchored: int
    backlog_max: int
    backlog_end: int
    round_trips: int
    calls: dict[str, int]
    readings: int

    @property
    def anchored_per_minute(self) -> float:
        return self.anchored * 60.0 / self.seconds

    @property
    def round_trips_per_anchor(self) -> float:
        return self.round_trips / max(1, self.anchored)

    def line(self) -> str:
        return (
            f"delay {self.delay:g} s, {self.seconds:g} s: {self.readings} readings, "
            f"{self.sealed} batches sealed, {self.anchored} anchored "
            f"({self.anchored_per_minute:.1f}/min), sealed backlog max {self.backlog_max} "
            f"end {self.backlog_end}, {self.round_trips} RPC round trips "
            f"({self.round_trips_per_anchor:.1f} per anchored batch), calls {self.calls}"
        )


async def run_slow_node(
    chain: DeployedChain,
    tmp: Path,
    *,
    delay: float,
    seconds: float,
    rate: float = 50.0,
    policy: AnchorPolicy | None = None,
    proxy_options: dict[str, Any] | None = None,
) -> SlowNodeRun:
    """Store ``rate`` readings/s for ``seconds`` while the anchorer talks to Anvil through a
    proxy adding ``delay`` to every round trip; count what it sealed, anchored and asked."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp / 'slow-node.db'}")
    device = address(secrets.randbits(64))
    await register(store, device)
    async with SlowRpc(chain.devchain.rpc_url, delay, **(proxy_options or {})) as proxy:
        client = await ChainClient.connect(proxy.url, timeout=max(10.0, 5 * delay))
        anchorer = Anchorer(
            store=store,
            client=client,
            signer=Signer(client, ANVIL_DEV_KEYS[2]),
            contract=chain.deployment.address("ReadingAnchor"),
            policy=policy or AnchorPolicy(),
        )
        proxy.reset()
        task = asyncio.create_task(anchorer.run())
        seq = 0
        backlog_max = 0
        tick = 0.25
        per_tick = max(1, round(rate * tick))
        start = time.monotonic()
        try:
            while (now := time.monotonic()) - start < seconds:
                batch = [reading(device, seq + i + 1) for i in range(per_tick)]
                seq += per_tick
                await store.readings.insert_batch(batch)
                anchorer.notify()
                backlog = len(await store.batches.find(state=BatchState.SEALED, limit=10_000))
                backlog_max = max(backlog_max, backlog)
                await asyncio.sleep(max(0.0, start + (seq / per_tick) * tick - time.monotonic()))
            elapsed = time.monotonic() - start
            backlog_end = len(await store.batches.find(state=BatchState.SEALED, limit=10_000))
            result = SlowNodeRun(
                delay=delay,
                seconds=elapsed,
                sealed=anchorer.state.batches_sealed,
                anchored=anchorer.state.batches_anchored,
                backlog_max=backlog_max,
                backlog_end=backlog_end,
                round_trips=proxy.round_trips,
                calls=dict(proxy.calls),
                readings=seq,
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
            await store.close()
    del now
    return result
