"""The GCRA limiters: in memory (a fake clock) and in a real Redis (shared and atomic)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time

import pytest

from chainsense.limits import Limit, MemoryLimiter, RedisLimiter
from tests.support import free_port

REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def ensure_redis() -> None:
    """Make sure the machine's Redis answers (start it if not); never skip."""
    import redis

    client = redis.Redis(port=6379, socket_timeout=2)
    try:
        client.ping()
        return
    except redis.RedisError:
        subprocess.run(REDIS_START, shell=True, check=False, timeout=30)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            client.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_limiter_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    limit = Limit("key", rate=2.0, burst=3)
    decisions = [await limiter.hit("a", limit) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after == pytest.approx(0.5)
    assert (await limiter.hit("b", limit)).allowed  # another bucket is untouched
    clock.now += 0.5
    assert (await limiter.hit("a", limit)).allowed
    assert not (await limiter.hit("a", limit)).allowed
    clock.now += 10
    assert (await limiter.hit("a", limit)).remaining == 2  # full again, never more than burst
    assert limit.window == 2


async def test_memory_limiter_drops_full_buckets_when_the_table_is_full() -> None:
    clock = Clock()
    limiter = MemoryLimiter(max_buckets=10, clock=clock)
    limit = Limit("address", rate=100.0, burst=5)
    for i in range(10):
        await limiter.hit(f"b{i}", limit)
    clock.now += 1
    await limiter.hit("new", limit)
    assert len(limiter._tat) == 1


@pytest.mark.slow
async def test_redis_limiter_is_one_limit_across_clients_and_atomic() -> None:
    ensure_redis()
    url = "redis://127.0.0.1:6379/0"
    one, two = RedisLimiter(url), RedisLimiter(url)
    bucket = f"test:{secrets.token_hex(8)}"
    limit = Limit("key", rate=0.01, burst=10)  # no refill during the test
    try:
        decisions = await asyncio.gather(
            *(limiter.hit(bucket, limit) for _ in range(25) for limiter in (one, two))
        )
        assert sum(d.allowed for d in decisions) == 10
        refused = [d for d in decisions if not d.allowed]
        assert all(90 < d.retry_after <= 100 for d in refused)
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))
    finally:
        await one.close()
        await two.close()


async def test_redis_limiter_fails_open_when_redis_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisLimiter(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        decision = await limiter.hit("x", Limit("key", 1.0, 1))
        assert decision.allowed
    finally:
        await limiter.close()
    assert "rate limits off" in caplog.text
    assert "hunter2-secret" not in caplog.text
