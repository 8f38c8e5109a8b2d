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

__all__ = ["SHED", "LoadShedMiddleware", "Shedder"]

#: Requests shed since the start, by reason (``queue-full``, ``queue-timeout``).
#: Also exported as ``chainsense_shed_requests_total{reason}``.
SHED: Counter[str] = Counter()


class Shedder:
    """The slots and the queue: one per app, shared by every path that serves requests (the
    middleware below, and the fast path of ``POST /v1/readings``, api/fastingest.py), so the
    bounds hold for all requests together."""

    def __init__(
        self, *, max_in_flight: int, max_queue: int, queue_timeout: float, retry_after: int
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self.in_flight = 0
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    async def enter(self) -> str | None:
        """Take a slot (waiting for one within the bounds): None, or the reason the request is
        shed (counted here); a caller that got a slot calls :meth:`leave` when done."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        slots = self._slots
        if slots.locked():
            if self.waiting >= self.max_queue or self.queue_timeout <= 0:
                return self._count("queue-full")
            self.waiting += 1
            try:
                await asyncio.wait_for(slots.acquire(), self.queue_timeout)
            except TimeoutError:
                return self._count("queue-timeout")
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()
        self.in_flight += 1
        return None

    def leave(self) -> None:
        self.in_flight -= 1
        assert self._slots is not None
        self._slots.release()

    @staticmethod
    def _count(reason: str) -> str:
        SHED[reason] += 1
        record_shed(reason)
        return reason

    def response(self, reason: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The 503 answer of a shed request: headers and body."""
        body = json.dumps(
            {
                "type": type_uri("overloaded"),
                "title": "Server overloaded",
                "status": 503,
                "detail": f"the server is handling its limit of {self.max_in_flight} requests "
                f"({reason}); retry after {self.retry_after} s",
            }
        ).encode()
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after).encode()),
        ]
        return headers, body


class LoadShedMiddleware:
    """The :class:`Shedder` as a middleware; ``shedder`` shares one with another path."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int = 256,
        max_queue: int = 1024,
        queue_timeout: float = 2.0,
        retry_after: int = 1,
        shedder: Shedder | None = None,
    ) -> None:
        self.app = app
        self.shedder = shedder or Shedder(
            max_in_flight=max_in_flight,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            retry_after=retry_after,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        shedder = self.shedder
        reason = await shedder.enter()
        if reason is not None:
            headers, body = shedder.response(reason)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            shedder.leave()
