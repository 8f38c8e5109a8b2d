"""Rate limits: a GCRA (generic cell rate algorithm, a token bucket without a refill timer) per
bucket, kept in this process (:class:`MemoryLimiter`) or in Redis (:class:`RedisLimiter`,
atomic in one Lua script, shared by every process that points at the same Redis).

Nothing here knows HTTP: ``chainsense.api.limits`` turns decisions into 429s and headers.
"""

from chainsense.limits.gcra import Decision, Limit, Limiter, MemoryLimiter, open_limiter
from chainsense.limits.redis import RedisLimiter

__all__ = ["Decision", "Limit", "Limiter", "MemoryLimiter", "RedisLimiter", "open_limiter"]
