"""HTTP side of observability: the metrics and request-id middleware, and ``GET /metrics``.

The middleware is plain ASGI (no per-request objects beyond a closure): it gives each request an
id (the client's ``X-Request-ID`` if it sent a sane one, else a new one), binds it to the log
context, echoes it in the response, and counts the request by method, route template (never the
raw path: ``/v1/devices/{device}``, not an address) and status.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainsense.observability.logs import bind_request_id, reset_request_id
from chainsense.observability.metrics import exposition, metrics

__all__ = ["RequestObservabilityMiddleware", "incoming_request_id", "new_request_id", "router"]

router = APIRouter(tags=["probes"])

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def get_metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


class RequestObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or new_request_id()
        token = bind_request_id(request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _template(scope)
            m = metrics()
            method = scope.get("method", "GET")
            m.http_requests.labels(method=method, route=route, status=str(status)).inc()
            m.http_request_duration.labels(method=method, route=route).observe(elapsed)
            reset_request_id(token)


class _RandomIds:
    """16 hex digits from the OS's random source, as ``secrets.token_hex(8)`` gives, read 4 KiB
    at a time: a getrandom call per request took ~8% of the event loop under 200 devices."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at + 8 > len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._at = at + 8
        return self._pool[at : at + 8].hex()


new_request_id = _RandomIds()
"""A new request id (for a request without a sane ``X-Request-ID``)."""


def incoming_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-ID`` when it is a sane one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None


def _template(scope: Scope) -> str:
    # FastAPI records the full template of the route it selected (prefixes of included routers
    # included); the route object itself only knows its path within its router.
    fastapi_scope: Any = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    path = getattr(context, "path_format", None)
    if isinstance(path, str):
        return path
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    return "unmatched"
