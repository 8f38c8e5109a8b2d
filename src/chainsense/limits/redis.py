"""The GCRA in Redis: one Lua script reads the bucket, decides and writes it back atomically,
on the Redis server's clock (``TIME``), so every process sharing the Redis enforces one limit.

If Redis does not answer, requests are allowed (fail open: an outage of the limiter must not
become an outage of the API) and a warning is logged at most every 10 s.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chainsense.limits.gcra import Decision, Limit
from chainsense.redact import redact_url

__all__ = ["RedisLimiter"]

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV[1] emission interval (s), ARGV[2] burst.
# Returns {allowed, remaining, retry_after, reset}; fractions as strings (Lua numbers would be
# truncated to integers in the reply).
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, tostring(allow_at - now), tostring(tat - now)}
end
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl)
return {1, math.floor((now - allow_at) / interval + 1e-9), '0', tostring(new_tat - now)}
"""

PREFIX = "chainsense:ratelimit:"


class RedisLimiter:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        import redis.asyncio as aioredis

        self.url = redact_url(url)
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._script: Any = self._redis.register_script(GCRA_LUA)
        self._warned = 0.0

    async def hit(self, bucket: str, limit: Limit) -> Decision:
        from redis.exceptions import RedisError

        try:
            allowed, remaining, retry_after, reset = await self._script(
                keys=[PREFIX + bucket], args=[repr(limit.interval), limit.burst]
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned > 10:
                self._warned = now
                log.warning("rate limits off: Redis at %s: %s", self.url, type(exc).__name__)
            return Decision(True, limit, limit.burst, 0.0, 0.0)
        return Decision(
            bool(allowed), limit, int(remaining), float(retry_after), max(0.0, float(reset))
        )

    async def close(self) -> None:
        await self._redis.aclose()
