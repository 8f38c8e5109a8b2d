"""Gauges that need a query: sampled every few seconds by one background task per process.

Backlog figures come from the store, the chain head and the anchorer's balance from the RPC
(each probe bounded by a short timeout, so a hung node only makes ``chain_rpc_up`` 0), the AI lag
from the worker. A change of the RPC's state is logged once (``chain RPC down`` / ``up``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chainsense.chain.devchain import read_dump_report
from chainsense.errors import ChainSenseError
from chainsense.observability.metrics import metrics
from chainsense.store import BatchState

if TYPE_CHECKING:
    from chainsense.platform import Platform

__all__ = ["sample_gauges", "sample_once"]

log = logging.getLogger(__name__)

INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 2.0


async def sample_gauges(platform: Platform, interval: float = INTERVAL_S) -> None:
    """Refresh the sampled gauges every ``interval`` seconds until cancelled."""
    rpc_up: bool | None = None
    while True:
        rpc_up = await sample_once(platform, rpc_up)
        await asyncio.sleep(interval)


async def sample_once(platform: Platform, rpc_was_up: bool | None = None) -> bool:
    """One refresh; returns whether the RPC answered (logging a change from ``rpc_was_up``)."""
    m = metrics()
    now = datetime.now(UTC)
    try:
        backlog = await platform.store.batches.backlog()
        m.unsealed_readings.set(backlog.unbatched_readings)
        m.pending_anchors.set(backlog.sealed_batches)
        oldest = backlog.oldest_unanchored_at
        m.oldest_unsealed_age.set(_age(now, oldest))
        pending = await platform.store.batches.find(state=BatchState.SEALED, limit=1)
        m.oldest_pending_anchor_age.set(_age(now, pending[0].sealed_at) if pending else 0.0)
    except ChainSenseError as exc:
        log.debug("metrics: store figures unavailable: %s", exc)
    health = platform.store.write_health
    m.store_writes_failing.set(0 if health.failing_since is None else 1)
    devchain = platform.chain.devchain
    report = platform.settings.dev_chain_report
    if devchain is not None:
        dumps = devchain.dumps
        m.dev_chain_state_dump_ok.set(1 if dumps.failing_since is None else 0)
        if dumps.last_saved is not None:
            m.dev_chain_state_age.set(time.monotonic() - dumps.last_saved)
    elif report is not None:  # serve --workers: the dev chain is `chain up`'s
        view = read_dump_report(report, platform.settings.anvil_state_interval)
        m.dev_chain_state_dump_ok.set(1 if view.ok else 0)
        if view.saved_age is not None:
            m.dev_chain_state_age.set(view.saved_age)
    client = platform.chain.client
    try:
        # the probe goes through the circuit breaker: while it is open this costs nothing
        m.chain_head_block.set(await client.probe(PROBE_TIMEOUT_S))
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            address = platform.chain.anchorer.address
            balance = await client.rpc(lambda: client.w3.eth.get_balance(address))
            m.anchorer_balance.set(balance)
        up = True
    except (ChainSenseError, TimeoutError) as exc:
        up = False
        if rpc_was_up is not False:
            log.warning("chain RPC down: %s", exc or "no answer in time")
    else:
        if rpc_was_up is False:
            log.info("chain RPC up again")
    m.chain_rpc_up.set(1 if up else 0)
    if platform.ai is not None:
        try:  # a follower gives the worker's lag as the database records it, not its own
            ai = await platform.ai.shared_status(platform.ai_leader)
            m.ai_lag_readings.set(ai["lag_readings"])
        except ChainSenseError as exc:
            log.debug("metrics: AI figures unavailable: %s", exc)
    return up


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())
