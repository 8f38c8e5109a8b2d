"""Overload shedding (docs/security.md): at most ``max_in_flight`` requests are handled at once.
A request that finds no free slot waits at most ``queue_timeout`` seconds, with at most
``max_queue`` others; past either bound it is answered at once with ``503`` problem+json and
``Retry-After``, so latency stays bounded instead of growing with the backlog. The probes and
/metrics are never counted nor shed.

Those bounds only see requests the app has started. With many devices that each open a
connection per request, the backlog builds up before the app, in the listening socket's accept
queue: uvloop accepts one connection per pass of the event loop, so while each pass also serves
requests (a few ms), connections wait there in the thousands, in order, with no deadline. A
request's time in the app stays short and no slot is ever missing (nothing is shed) while the
devices wait seconds, past their client timeout, and the readings they gave up on are stored
later all the same (docs/performance.md, "1,200 devices at once": 0.14 s in the app, 2.3 s seen
by the devices, ~1,100 connections in the accept queue, no 503). So the shedder also estimates
the wait before the app: the loop's pass time (how late a callback scheduled at a request's
arrival runs; measured while requests come, no task of its own) times one plus the connections
waiting to be accepted (``backlog``: TCP_INFO of the listening socket, :func:`accept_backlog`).
Past ``max_wait`` seconds, new requests are answered 503 at the door, before their body is read
or any work is done, with a ``Retry-After`` of twice that estimate; cheap answers make the
passes short, so the queue drains, and the devices come back when it has.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from chainsense.api.limits import EXEMPT_PATHS, PROBLEM_JSON
from chainsense.api.problems import type_uri
from chainsense.observability.metrics import metrics, record_shed

__all__ = ["SHED", "LoadShedMiddleware", "Shedder", "accept_backlog", "inherited_listener"]

#: Requests shed since the start, by reason (``queue-full``, ``queue-timeout``, ``backlog``).
#: Also exported as ``chainsense_shed_requests_total{reason}``.
SHED: Counter[str] = Counter()


class Shedder:
    """The slots and the queue: one per app, shared by every path that serves requests (the
    middleware below, and the fast path of ``POST /v1/readings``, api/fastingest.py), so the
    bounds hold for all requests together."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_queue: int,
        queue_timeout: float,
        retry_after: int,
        max_wait: float = 0.0,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self.max_wait = max_wait
        """Seconds a new request may be expected to have waited before the app; 0: not
        watched."""
        self.backlog = backlog
        """Connections waiting to be accepted (None: unknown, counted as none)."""
        self.in_flight = 0
        self.waiting = 0
        self.loop_lag = 0.0
        """The event loop's lag last measured, in seconds: about one pass of the loop."""
        self.wait_estimate = 0.0
        """The wait before the app estimated for the last request, in seconds."""
        self._slots: asyncio.Semaphore | None = None
        self._probe_at: float | None = None  # loop time a lag probe was scheduled, if one is

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Measure the loop's lag: schedule a callback now unless one is pending; it records
        how late it ran."""
        if self._probe_at is None:
            self._probe_at = loop.time()
            loop.call_soon(self._probed, loop)

    def _probed(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._probe_at is not None:
            self.loop_lag = loop.time() - self._probe_at
            self._probe_at = None
            metrics().event_loop_lag.observe(self.loop_lag)

    async def enter(self) -> str | None:
        """Take a slot (waiting for one within the bounds): None, or the reason the request is
        shed (counted here); a caller that got a slot calls :meth:`leave` when done."""
        if self.max_wait > 0:
            self._watch(asyncio.get_running_loop())
            backlog = self.backlog() if self.backlog is not None else 0
            self.wait_estimate = self.loop_lag * (1 + backlog)
            if self.wait_estimate > self.max_wait:
                return self._count("backlog")
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
        """The 503 answer of a shed request: headers and body. Shed for the backlog, the
        ``Retry-After`` is twice the estimated wait (a device that comes back sooner finds the
        backlog still there), at least ``retry_after``, at most 30 s."""
        retry_after = self.retry_after
        if reason == "backlog":
            retry_after = min(30, max(retry_after, math.ceil(2 * self.wait_estimate)))
        body = json.dumps(
            {
                "type": type_uri("overloaded"),
                "title": "Server overloaded",
                "status": 503,
                "detail": f"the server is handling its limit of {self.max_in_flight} requests "
                f"({reason}); retry after {retry_after} s",
            }
        ).encode()
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()),
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
        max_wait: float = 0.0,
        shedder: Shedder | None = None,
    ) -> None:
        self.app = app
        self.shedder = shedder or Shedder(
            max_in_flight=max_in_flight,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            retry_after=retry_after,
            max_wait=max_wait,
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


def accept_backlog(sock: socket.socket, *, share: int = 1) -> Callable[[], int] | None:
    """A function returning how many connections wait in ``sock``'s accept queue (a listening
    TCP socket): Linux reports it in TCP_INFO's ``tcpi_unacked`` for a listener. None where
    that is not available. With ``share`` processes accepting from the same socket (``serve
    --workers N``), each sees the whole queue but takes about one connection in ``share``: a
    new connection waits for this process's share of it, rounded up."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return None
    option = socket.TCP_INFO
    share = max(1, share)

    def waiting() -> int:
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, option, 32)
        except OSError:  # closed
            return 0
        return -(-int(struct.unpack_from("I", info, 24)[0]) // share)

    return waiting


def inherited_listener(port: int) -> socket.socket | None:
    """The listening TCP socket on ``port`` that this process holds, found among its open file
    descriptors (a ``serve --workers`` worker gets the parent's socket from uvicorn under a
    descriptor number of its own, and its app is built without it): a duplicate of it (the same
    socket and accept queue), or None."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return None
    for name in os.listdir(fd_dir):
        try:
            if not os.readlink(f"{fd_dir}/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))  # family and type read from the fd
        except (OSError, ValueError):
            continue
        try:
            address = sock.getsockname()
            if (
                sock.type == socket.SOCK_STREAM
                and sock.family in (socket.AF_INET, socket.AF_INET6)
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                and address[1] == port
            ):
                return sock
        except OSError:
            pass
        sock.close()
    return None
