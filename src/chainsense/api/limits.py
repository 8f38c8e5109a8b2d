"""Rate limits at the HTTP edge (docs/security.md).

Every request outside the probes is counted against one bucket:

- ``key:<id>`` when it carries a *valid* API key (``Authorization: Bearer`` or ``X-API-Key``);
- ``address:<client address>`` otherwise (no key, or a key that does not authenticate: a
  stranger cannot get fresh buckets by inventing keys).

Readings are also counted per device (``device:<address>``), once per request that carries the
device's readings, and only after their signature verified (``IngestPipeline.admit``): a
stranger cannot spend another device's quota.

A refused request gets ``429`` problem+json with ``Retry-After`` and the IETF headers
(draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "key";q=100;w=2`` (quota ``q``
requests per window ``w`` seconds) and ``RateLimit: "key";r=0;t=1`` (``r`` remaining, ``t``
seconds until the quota is back). Allowed requests carry the same two headers.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainsense.api.problems import type_uri
from chainsense.config import Settings
from chainsense.limits import Decision, Limit, Limiter

__all__ = [
    "EXEMPT_PATHS",
    "EdgeRateLimit",
    "Policies",
    "RateLimitMiddleware",
    "count_rate_limited",
    "device_admission",
    "rate_limit_headers",
]

#: Never limited, never shed: orchestrators must always reach the probes, Prometheus /metrics.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

PROBLEM_JSON = "application/problem+json"

#: Requests refused per policy since the start (also the Prometheus counter
#: ``chainsense_rate_limited_requests_total{policy="key|device|address"}``); this function is the
#: one place a refusal is counted.
RATE_LIMITED: Counter[str] = Counter()


def count_rate_limited(policy: str) -> None:
    from chainsense.observability.metrics import record_rate_limited

    RATE_LIMITED[policy] += 1
    record_rate_limited(policy)


@dataclass(frozen=True)
class Policies:
    key: Limit
    device: Limit
    address: Limit

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            key=Limit("key", settings.rate_limit_key_rate, settings.rate_limit_key_burst),
            device=Limit(
                "device", settings.rate_limit_device_rate, settings.rate_limit_device_burst
            ),
            address=Limit(
                "address", settings.rate_limit_address_rate, settings.rate_limit_address_burst
            ),
        )


def retry_after_s(decision: Decision) -> int:
    return max(1, math.ceil(decision.retry_after))


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit`` (and ``Retry-After`` when refused)."""
    limit = decision.limit
    reset = retry_after_s(decision) if not decision.allowed else math.ceil(decision.reset)
    headers = [
        (b"ratelimit-policy", f'"{limit.name}";q={limit.burst};w={limit.window}'.encode()),
        (b"ratelimit", f'"{limit.name}";r={decision.remaining};t={reset}'.encode()),
    ]
    if not decision.allowed:
        headers.append((b"retry-after", str(retry_after_s(decision)).encode()))
    return headers


def too_many_requests(decision: Decision, who: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    import json

    limit = decision.limit
    body = {
        "type": type_uri("rate-limited"),
        "title": "Too many requests",
        "status": 429,
        "detail": f"{who} is over its rate limit of {limit.rate:g} requests per second "
        f"({limit.burst} at once); retry after {retry_after_s(decision)} s",
    }
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(raw)).encode()),
        *rate_limit_headers(decision),
    ]
    return 429, headers, raw


def _api_key(scope: Scope) -> str | None:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1")
    return None


class KeyCache:
    """API key -> key id (None: not valid), remembered ``ttl`` seconds so that counting a request
    costs no database query. Only the bucket depends on it: the route's own check still decides
    (a key revoked a moment ago is refused by the route, counted here as its key)."""

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._known: dict[bytes, tuple[int | None, float]] = {}

    async def identify(
        self, key: str, authenticate: Callable[[str], Awaitable[int | None]]
    ) -> int | None:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        key_id = await authenticate(key)
        if len(self._known) >= self.size:
            self._known.clear()
        self._known[digest] = (key_id, now + self.ttl)
        return key_id


class EdgeRateLimit:
    """The per-key / per-address count of a request: one per app, shared by the middleware
    below and the fast path of ``POST /v1/readings`` (api/fastingest.py)."""

    def __init__(
        self,
        *,
        limiter: Callable[[], Limiter | None],
        policies: Policies,
        authenticate: Callable[[Scope, str], Awaitable[int | None]],
    ) -> None:
        self.limiter = limiter
        self.policies = policies
        self.authenticate = authenticate
        self.keys = KeyCache()

    async def decide(self, scope: Scope, limiter: Limiter) -> tuple[Decision, str]:
        """Count the request against its bucket: the decision, and who it was counted as
        (refusals are counted in the metrics here)."""
        key = _api_key(scope)
        key_id = None
        if key is not None:
            key_id = await self.keys.identify(key, lambda k: self.authenticate(scope, k))
        if key_id is not None:
            decision = await limiter.hit(f"key:{key_id}", self.policies.key)
            who = "this API key"
        else:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            decision = await limiter.hit(f"address:{address}", self.policies.address)
            who = "this client address"
        if not decision.allowed:
            count_rate_limited(decision.limit.name)
        return decision, who


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Callable[[], Limiter | None] | None = None,
        policies: Policies | None = None,
        authenticate: Callable[[Scope, str], Awaitable[int | None]] | None = None,
        edge: EdgeRateLimit | None = None,
    ) -> None:
        self.app = app
        if edge is None:
            assert limiter is not None
            assert policies is not None
            assert authenticate is not None
            edge = EdgeRateLimit(limiter=limiter, policies=policies, authenticate=authenticate)
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.edge.limiter()
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or limiter is None:
            await self.app(scope, receive, send)
            return
        decision, who = await self.edge.decide(scope, limiter)
        if not decision.allowed:
            status, headers, body = too_many_requests(decision, who)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        extra = rate_limit_headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def device_admission(
    limiter: Limiter, limit: Limit
) -> Callable[[Sequence[str]], Awaitable[list[float | None]]]:
    """The ``IngestPipeline.admit`` hook: given the devices whose readings verified, one entry
    per request (a device twice when two MQTT messages of it were grouped), count one request
    for each entry, in order; return each refused entry's retry-after (s), None if admitted."""

    async def admit(devices: Sequence[str]) -> list[float | None]:
        waits: list[float | None] = []
        for device in devices:
            decision = await limiter.hit(f"device:{device.lower()}", limit)
            if decision.allowed:
                waits.append(None)
            else:
                count_rate_limited("device")
                waits.append(float(retry_after_s(decision)))
        return waits

    return admit


def describe(policies: Policies) -> dict[str, Any]:
    """The policies as plain data (for docs and tests)."""
    return {
        p.name: {"rate": p.rate, "burst": p.burst, "window": p.window}
        for p in (policies.key, policies.device, policies.address)
    }
