"""The RPC circuit breaker: its state machine on a fake clock, then the client against a real Anvil
that is stopped and started again, and against a TCP black hole (a port that accepts connections
and never answers), where an open circuit makes a call cost no time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainsense.chain import ChainClient, DevChain
from chainsense.chain.breaker import BreakerState, CircuitBreaker
from chainsense.errors import ChainUnavailableError
from tests.support import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_and_a_success_resets_the_count() -> None:
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(failures=3, cooldown=5, on_change=lambda s, _: changes.append(s))
    for _ in range(2):
        assert breaker.before() is None
        breaker.failure("refused")
    assert breaker.before() is None
    breaker.success()  # the count starts again
    for _ in range(2):
        assert breaker.before() is None
        breaker.failure("refused")
    assert breaker.state is BreakerState.CLOSED
    assert breaker.before() is None
    breaker.failure("refused")
    assert breaker.state is BreakerState.OPEN
    assert changes == [BreakerState.OPEN]


def test_open_refuses_then_lets_one_probe_through_after_the_cooldown() -> None:
    clock = Clock()
    refused: list[int] = []
    breaker = CircuitBreaker(
        failures=1, cooldown=5, clock=clock, on_refuse=lambda: refused.append(1)
    )
    breaker.before()
    breaker.failure("reset by peer")
    why = breaker.before()
    assert why is not None
    assert str(why) == "circuit open, next probe in 5.0 s (last error: reset by peer)"
    clock.now += 5
    assert breaker.before() is None  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    during = breaker.before()  # another call while the probe is in flight
    assert during is not None
    assert during.probing
    breaker.failure("still down")  # the probe failed: open for another cooldown
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == 5
    clock.now += 5
    assert breaker.before() is None
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.before() is None
    assert len(refused) == breaker.short_circuited == 2


def test_a_cancelled_probe_frees_the_probe_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=1, clock=clock)
    breaker.before()
    breaker.failure("x")
    clock.now += 1
    assert breaker.before() is None
    breaker.release()
    assert breaker.before() is None  # the next call may probe


def test_zero_failures_turns_it_off() -> None:
    breaker = CircuitBreaker(failures=0)
    for _ in range(10):
        assert breaker.before() is None
        breaker.failure("x")
    assert breaker.state is BreakerState.CLOSED


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An RPC URL whose port accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_black_holed_rpc_costs_nothing_once_the_circuit_is_open(black_hole: str) -> None:
    breaker = CircuitBreaker(failures=3, cooldown=0.4)
    client = ChainClient(black_hole, timeout=0.5, retries=0, breaker=breaker)
    try:
        # without the breaker's verdict a call waits its whole timeout
        started = time.monotonic()
        with pytest.raises(ChainUnavailableError):
            await client.block_number()
        slow = time.monotonic() - started
        assert slow >= 0.45
        # bounded probes (as /readyz and the sampler make) count their timeouts as failures
        for _ in range(2):
            with pytest.raises(ChainUnavailableError, match=r"no answer within 0\.1 s"):
                await client.probe(0.1)
        assert breaker.state is BreakerState.OPEN
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(ChainUnavailableError, match="circuit open"):
                await client.block_number()
        fast = (time.monotonic() - started) / 100
        assert fast < slow / 50, (fast, slow)
        assert breaker.short_circuited == 100
        # half-open: one probe goes to the node, the calls meanwhile fail at once
        await asyncio.sleep(0.4)
        probe = asyncio.create_task(client.block_number())
        await asyncio.sleep(0.05)
        assert breaker.state is BreakerState.HALF_OPEN
        with pytest.raises(ChainUnavailableError, match="a probe is in flight"):
            await client.chain_id()
        with pytest.raises(ChainUnavailableError):
            await probe
        assert breaker.state is BreakerState.OPEN  # the probe failed: open again
    finally:
        await client.close()


@pytest.mark.chain
async def test_anvil_stopped_opens_the_circuit_and_started_again_closes_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    devchain = DevChain(state_dir=tmp_path / "anvil", port=port, state_interval=3600)
    await devchain.start()
    states: list[BreakerState] = []
    breaker = CircuitBreaker(failures=2, cooldown=0.3, on_change=lambda s, _: states.append(s))
    client = await ChainClient.connect(devchain.rpc_url, timeout=2, retries=0, breaker=breaker)
    try:
        head = await client.block_number()
        await devchain.stop()
        for _ in range(2):
            with pytest.raises(ChainUnavailableError, match="Connect"):
                await client.block_number()
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(ChainUnavailableError, match="circuit open"):
            await client.block_number()
        await asyncio.sleep(0.3)
        with pytest.raises(ChainUnavailableError, match="Connect"):  # the probe: still down
            await client.block_number()
        assert breaker.state is BreakerState.OPEN
        await devchain.start()  # the same port, the saved state
        await asyncio.sleep(0.3)
        assert await client.block_number() >= head  # the probe finds it back
        assert breaker.state is BreakerState.CLOSED
        assert states == [
            BreakerState.OPEN,
            BreakerState.HALF_OPEN,
            BreakerState.OPEN,
            BreakerState.HALF_OPEN,
            BreakerState.CLOSED,
        ]
    finally:
        await client.close()
        await devchain.stop()
