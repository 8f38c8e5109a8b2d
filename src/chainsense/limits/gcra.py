"""GCRA: each bucket keeps one number, the theoretical arrival time (TAT) of the next request.

With ``rate`` requests per second (emission interval ``T = 1/rate``) and ``burst`` requests at
once, a request at time ``now`` is allowed when ``max(TAT, now) + T - burst*T <= now``; then
``TAT = max(TAT, now) + T``. A full bucket (``burst`` requests) refills in ``burst/rate``
seconds. This is the token bucket, computed on demand: no timers, one value per bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Decision", "Limit", "Limiter", "MemoryLimiter", "gcra", "open_limiter"]


@dataclass(frozen=True)
class Limit:
    """``rate`` requests per second sustained, ``burst`` at once; ``name`` names the policy in
    the ``RateLimit-Policy`` header (``key``, ``device``, ``address``)."""

    name: str
    rate: float
    burst: int

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    @property
    def window(self) -> int:
        """Seconds a full bucket takes to refill (the policy's window ``w``), at least 1."""
        return max(1, math.ceil(self.burst / self.rate))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: Limit
    remaining: int
    """Requests still allowed at once after this one."""
    retry_after: float
    """Seconds until a refused request would be allowed (0 when allowed)."""
    reset: float
    """Seconds until the bucket is full again."""


def gcra(tat: float | None, now: float, limit: Limit) -> tuple[float | None, Decision]:
    """One request against a bucket whose TAT is ``tat``: the new TAT (None: unchanged, the
    request is refused) and the decision."""
    interval = limit.interval
    start = now if tat is None or tat < now else tat
    new_tat = start + interval
    allow_at = new_tat - limit.burst * interval
    if now < allow_at:
        return None, Decision(False, limit, 0, allow_at - now, start - now)
    remaining = int((now - allow_at) / interval + 1e-9)
    return new_tat, Decision(True, limit, remaining, 0.0, new_tat - now)


class Limiter(Protocol):
    async def hit(self, bucket: str, limit: Limit) -> Decision:
        """Count one request against ``bucket``; say whether it is allowed."""
        ...

    async def close(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process (one event loop: no lock needed). Entries of full buckets are
    dropped when the table grows past ``max_buckets``."""

    def __init__(
        self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tat: dict[str, float] = {}
        self._max = max_buckets
        self._clock = clock

    async def hit(self, bucket: str, limit: Limit) -> Decision:
        now = self._clock()
        new_tat, decision = gcra(self._tat.get(bucket), now, limit)
        if new_tat is not None:
            if len(self._tat) >= self._max and bucket not in self._tat:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
            self._tat[bucket] = new_tat
        return decision

    async def close(self) -> None:
        self._tat.clear()


def open_limiter(redis_url: str | None) -> Limiter:
    """A Redis limiter when a URL is given (several processes share it), else one in memory."""
    if redis_url:
        from chainsense.limits.redis import RedisLimiter

        return RedisLimiter(redis_url)
    return MemoryLimiter()
