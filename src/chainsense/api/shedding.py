"""Overload shedding (docs/security.md): at most ``max_in_flight`` requests are handled at once.
A request that finds no free slot waits at most ``queue_timeout`` seconds, with at most
``max_queue`` others; past either bound it is answered at once with ``503`` problem+json and
``Retry-After``, so latency stays bounded instead of growing with the backlog. The probes and
/metrics are never counted nor shed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from starlette.types import ASGIApp, Receive, Scope, Send

from chainsense.api.limits import EXEMPT_PATHS, PROBLEM_JSON
from chainsense.api.problems import type_uri
from chainsense.observability.metrics import record_shed

__all__ = ["SHED", "LoadShedMiddleware"]

#: Requests shed since the start, by reason (``queue-full``, ``queue-timeout``).
#: Also exported as ``chainsense_shed_requests_total{reason}``.
SHED: Counter[str] = Counter()


class LoadShedMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_queue: int,
        queue_timeout: float,
        retry_after: int,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self.in_flight = 0
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        slots = self._slots
        if slots.locked():
            if self.waiting >= self.max_queue or self.queue_timeout <= 0:
                await self._shed(send, "queue-full")
                return
            self.waiting += 1
            try:
                await asyncio.wait_for(slots.acquire(), self.queue_timeout)
            except TimeoutError:
                await self._shed(send, "queue-timeout")
                return
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            slots.release()

    async def _shed(self, send: Send, reason: str) -> None:
        SHED[reason] += 1
        record_shed(reason)
        body = json.dumps(
            {
                "type": type_uri("overloaded"),
                "title": "Server overloaded",
                "status": 503,
                "detail": f"the server is handling its limit of {self.max_in_flight} requests "
                f"({reason}); retry after {self.retry_after} s",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
