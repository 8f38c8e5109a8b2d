"""``POST /v1/readings`` without FastAPI's router and the middleware stack: the fast path.

Under many devices each sending one reading per request, the framework cost more than the
reading: FastAPI's routing and dependency solving ~30% of the event loop, the middleware layers
and response objects a good part of the rest (docs/performance.md). This path serves exactly
that route as one plain ASGI function, dispatched by :class:`ChainSenseAPI` before anything
else, and does in one place, in the same order, what the stack does:

1. request id (``X-Request-ID``) bound to the logs and echoed (observability.py);
2. overload shedding (shedding.py: the same :class:`Shedder`, so the bounds hold for every
   request together);
3. the per-key / per-address rate limit (limits.py: the same :class:`EdgeRateLimit`; the
   per-device limit runs inside the ingest pipeline, as before);
4. the strict JSON gate (body.py: the same reader and parser, 413 / 415 / 400);
5. the route: :func:`answer_readings`, the very function the FastAPI route calls;
6. the answer with the rate-limit headers, the security headers (security.py) and the request
   id, in the order the stack adds them; the request counted in ``/metrics`` under the route
   template, or ``unmatched`` when it was answered before routing (shed, limited, refused body),
   as the stack counts it.

The FastAPI route stays: it documents the operation in OpenAPI, and it serves the requests this
path leaves to it: with OpenTelemetry tracing on (the FastAPI instrumentation makes the request's
span), with CORS configured (CORSMiddleware adds its headers), under a ``root_path``, and when
``CHAINSENSE_FAST_INGEST=false``. tests/api/test_fastingest.py sends the same requests through
both and compares status, headers and bodies.

One difference, on purpose: an unexpected exception is answered 500 problem+json with the same
body, and here also with the security headers and the request id (the stack's outermost error
handler sends it bare); it is logged once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from chainsense.api.access import logging_send
from chainsense.api.body import NO_BODY, Refusal, StrictJSONBody, refusal_answer
from chainsense.api.errors import PROBLEM_JSON, ascii_json, domain_problem, problem_body
from chainsense.api.limits import EdgeRateLimit, rate_limit_headers, too_many_requests
from chainsense.api.observability import incoming_request_id, new_request_id
from chainsense.api.routes.readings import answer_readings
from chainsense.api.security import API_HEADERS
from chainsense.api.shedding import Shedder
from chainsense.errors import ChainSenseError
from chainsense.observability.logs import bind_request_id, reset_request_id
from chainsense.observability.metrics import Metrics, metrics

if TYPE_CHECKING:
    from chainsense.platform import Platform

__all__ = ["PATH", "ChainSenseAPI", "FastIngest"]

log = logging.getLogger("chainsense.api.errors")

PATH = "/v1/readings"
_ROUTE = PATH  # the route template the metrics count it under once routed
_UNMATCHED = "unmatched"
_JSON = (b"content-type", b"application/json")
_PROBLEM = (b"content-type", PROBLEM_JSON.encode())
Headers = list[tuple[bytes, bytes]]


class FastIngest:
    """The fast path; see the module docstring. Built by :func:`install_fast_ingest`."""

    def __init__(
        self,
        app: FastAPI,
        *,
        shedder: Shedder,
        edge: EdgeRateLimit | None,
        gate: StrictJSONBody,
    ) -> None:
        self.app = app
        self.shedder = shedder
        self.edge = edge
        self.gate = gate
        self._counters: dict[tuple[str, int], Any] = {}
        self._durations: dict[str, Any] = {}
        self._metrics: Metrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = incoming_request_id(scope) or new_request_id()
        token = bind_request_id(request_id)
        started = time.perf_counter()
        # the answer's last headers: the security headers, then the request id
        tail = (*API_HEADERS, (b"x-request-id", request_id.encode()))
        status = 500
        route = _UNMATCHED
        try:
            shedder = self.shedder
            reason = await shedder.enter()
            if reason is not None:
                headers, body = shedder.response(reason)
                status = 503
                await _answer(send, 503, [*headers, *tail], body)
                return
            try:
                limit_headers: Headers = []
                edge = self.edge
                limiter = edge.limiter() if edge is not None else None
                if edge is not None and limiter is not None:
                    decision, who = await edge.decide(scope, limiter)
                    if not decision.allowed:
                        status, headers, body = too_many_requests(decision, who)
                        await _answer(send, status, [*headers, *tail], body)
                        return
                    limit_headers = rate_limit_headers(decision)
                gate = self.gate
                try:
                    headers_in = {k.lower(): v for k, v in scope["headers"]}
                    raw, _ = await gate.read(headers_in, receive)
                    value = gate.parse(headers_in, raw) if raw else NO_BODY
                except Refusal as refusal:
                    status, headers, body = refusal_answer(refusal)
                    await _answer(send, status, [*headers, *limit_headers, *tail], body)
                    return
                route = _ROUTE
                status, headers, body = await self._route(value)
                await _answer(send, status, [*headers, *limit_headers, *tail], body)
            finally:
                shedder.leave()
        finally:
            self._count(route, status, time.perf_counter() - started)
            reset_request_id(token)

    async def _route(self, value: Any) -> tuple[int, Headers, bytes]:
        platform: Platform = self.app.state.platform
        try:
            status, content, extra = await answer_readings(platform, value)
        except ChainSenseError as exc:
            status, content, extra = domain_problem(exc)
            body = ascii_json(content)
            # the error handler sets Retry-After after the content headers
            headers = [(b"content-length", str(len(body)).encode()), _PROBLEM]
            headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
            return status, headers, body
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            content = problem_body(
                500, "Internal error", "an unexpected error was logged by the server"
            )
            body = ascii_json(content)
            return 500, [(b"content-length", str(len(body)).encode()), _PROBLEM], body
        body = ascii_json(content)
        # a response's given headers come first, then its content headers (starlette's order)
        headers = [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append(_JSON if status < 400 else _PROBLEM)
        return status, headers, body

    def _count(self, route: str, status: int, elapsed: float) -> None:
        """``chainsense_http_requests_total`` and ``..._duration_seconds``, as the middleware
        counts them; the labelled children are looked up once (``labels()`` costs a lock and
        a dict build per call)."""
        m = metrics()
        if m is not self._metrics:  # a fresh registry (tests): forget the old children
            self._metrics = m
            self._counters.clear()
            self._durations.clear()
        counter = self._counters.get((route, status))
        if counter is None:
            counter = m.http_requests.labels(method="POST", route=route, status=str(status))
            self._counters[(route, status)] = counter
        counter.inc()
        duration = self._durations.get(route)
        if duration is None:
            duration = m.http_request_duration.labels(method="POST", route=route)
            self._durations[route] = duration
        duration.observe(elapsed)


async def _answer(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ChainSenseAPI(FastAPI):
    """FastAPI, with ``POST /v1/readings`` handed to :attr:`fast_ingest` when it is set, and
    the access log (api/access.py) when :attr:`access_log` is."""

    fast_ingest: FastIngest | None = None
    access_log: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.access_log and scope["type"] == "http":
            send = logging_send(scope, send)
        fast = self.fast_ingest
        if (
            fast is not None
            and scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
