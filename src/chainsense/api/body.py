"""Every request body under /v1 goes through one strict JSON gate before any route sees it.

An ASGI middleware (so it covers every route, present and future, whatever parses the body next):
it reads the body up to ``CHAINSENSE_MAX_BODY_BYTES`` (413 beyond), requires a JSON media type
(415 otherwise), and parses it with :func:`chainsense.strictjson.loads` (400 for invalid UTF-8,
nesting deeper than ``CHAINSENSE_MAX_JSON_DEPTH``, duplicate keys, lone surrogates, overlong
numbers, NaN, or malformed JSON). Only a body that passes reaches the app: routes with a pydantic
body model parse it again (safe now: bounded depth, unique keys, valid text), and routes that parse
by hand take the parsed value from :func:`json_body` instead of parsing twice.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainsense.api.errors import PROBLEM_JSON, ascii_json, problem_body
from chainsense.api.problems import PROBLEM_TYPES
from chainsense.strictjson import JSONBodyError, loads, quote

__all__ = ["NO_BODY", "Refusal", "StrictJSONBody", "json_body", "refusal_answer"]

log = logging.getLogger(__name__)

_STATE_KEY = "chainsense.json_body"
NO_BODY: Any = object()
"""What :func:`json_body` returns for a request without a body."""


def json_body(request: Request) -> Any:
    """The body the gate parsed (or :data:`NO_BODY`)."""
    return request.scope.get("state", {}).get(_STATE_KEY, NO_BODY)


def _is_json(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


class Refusal(Exception):
    """A body the gate refuses: the problem type's code, the detail, the field named."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.field = field


def refusal_answer(refusal: Refusal) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The problem+json answer to a refused body: status, headers, body."""
    entry = PROBLEM_TYPES[refusal.code]
    extra: dict[str, Any] = {}
    if refusal.field is not None:
        extra["field"] = refusal.field
    body = problem_body(entry.status, entry.title, refusal.detail, code=refusal.code, **extra)
    raw = ascii_json(body)
    headers = [(b"content-length", str(len(raw)).encode()), _PROBLEM_TYPE]
    # The rest of an oversized body is not read: the connection is closed after this.
    if entry.status == 413:
        headers.append((b"connection", b"close"))
    return entry.status, headers, raw


_PROBLEM_TYPE = (b"content-type", PROBLEM_JSON.encode())


class StrictJSONBody:
    """The gate; ``prefix`` limits it to the API (the dashboard's pages are left alone)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, max_depth: int, prefix: str = "/v1/"
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        try:
            raw, more = await self.read(headers, receive)
            if raw:
                value = self.parse(headers, raw)
                state = dict(scope.get("state") or {})
                state[_STATE_KEY] = value
                # in place: outer middleware (metrics) reads the route FastAPI records in scope
                scope["state"] = state
        except Refusal as refusal:
            status, answer_headers, body = refusal_answer(refusal)
            await send({"type": "http.response.start", "status": status, "headers": answer_headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, _replay(raw, more, receive), send)

    async def read(self, headers: dict[bytes, bytes], receive: Receive) -> tuple[bytes, bool]:
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise Refusal("body-too-large", self._too_large())
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise Refusal("body-too-large", self._too_large())
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_bytes} bytes, the limit"

    def parse(self, headers: dict[bytes, bytes], raw: bytes) -> Any:
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if not _is_json(content_type):
            given = f"Content-Type {quote(content_type)}" if content_type else "no Content-Type"
            raise Refusal(
                "unsupported-media-type",
                f"the body was sent with {given}; every body of this API is JSON: send "
                "Content-Type: application/json",
                "Content-Type",
            )
        try:
            return loads(raw, max_depth=self.max_depth)
        except JSONBodyError as exc:
            raise Refusal(exc.code, exc.detail, exc.field) from None
        except Exception:  # a parser bug must not become a 500: log it, refuse the body
            log.exception("the strict JSON parser failed unexpectedly")
            raise Refusal("malformed-json", "the body could not be parsed as JSON") from None


def _replay(raw: bytes, complete: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    del complete  # a client that went away gets its disconnect after the replayed part
    return replay
