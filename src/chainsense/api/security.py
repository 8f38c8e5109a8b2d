"""Security headers on every answer, and CORS only when configured (docs/security.md).

Every response: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: same-origin`` (``no-referrer`` would make browsers send ``Origin: null`` on
the console's own form posts, which its CSRF origin check refuses). JSON and other non-HTML
answers: ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'``. HTML pages
(the dashboard, /docs, /redoc): a CSP that allows this origin's scripts, styles, images and API
calls and nothing else; each inline ``<script>`` of the page is allowed by its SHA-256 hash,
computed from the page as served, so the pages keep working while any other inline script (an
injection) is blocked.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_HEADERS", "SecurityHeadersMiddleware", "html_csp", "install_cors"]

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
#: What the middleware appends to a JSON answer that has none of these headers, in its order.
API_HEADERS = (*_COMMON, (b"content-security-policy", _API_CSP))
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)


def html_csp(page: bytes) -> str:
    """The CSP of an HTML page: this origin only, plus the hashes of its inline scripts."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in _INLINE_SCRIPT.finditer(page)
        if m.group(1).strip()
    )
    script_src = f"'self' {hashes}".strip()
    return (
        f"default-src 'self'; script-src {script_src}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in _COMMON}
                ]
                headers += _COMMON
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                message = dict(message, headers=headers)
                if content_type.startswith(b"text/html"):
                    held = message  # wait for the page: its CSP depends on its inline scripts
                    return
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", _API_CSP))
                await send(message)
                return
            if held is not None and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                page = b"".join(body)
                start = dict(held)
                start["headers"] = [
                    *held["headers"],
                    (b"content-security-policy", html_csp(page).encode()),
                ]
                held = None
                await send(start)
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """CORS for the given origins; nothing at all (the browser's same-origin rule) when empty."""
    if not origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        expose_headers=["Retry-After", "RateLimit", "RateLimit-Policy", "Location"],
        allow_credentials=False,
        max_age=600,
    )
