"""The console's pages. Each is server-rendered from the platform's state; a page polled by htmx
(``HX-Request``) gets only its live fragment back. Pages need a console session (sign in at
``/login`` with an API key); the islands call the JSON API with the same cookie and the page's
CSRF token."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from chainsense import __version__
from chainsense.identity import did_pkh
from chainsense.platform import Platform
from chainsense.store import ConsoleSession
from chainsense.web import data
from chainsense.web.auth import current_session, read_form, safe_next, sign_in, sign_out

__all__ = ["build_router"]

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _ago(ms: int | None) -> str:
    if ms is None:
        return "never"
    seconds = max(0, int(time.time() - ms / 1000))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _when(value: datetime | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: str | bytes | None, keep: int = 6) -> str:
    if value is None:
        return "—"
    text = "0x" + value.hex() if isinstance(value, bytes) else value
    return text if len(text) <= 2 * keep + 3 else f"{text[: keep + 2]}…{text[-keep:]}"


def _environment() -> Environment:
    templates = resources.files(__package__).joinpath("templates")
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=_ago, when=_when, short=_short, hex=lambda b: "0x" + b.hex())
    return env


def _asset_version() -> str:
    dist = resources.files(__package__).joinpath("static", "dist")
    digest = hashlib.sha256()
    for name in ("console.js", "console.css", "verify.js"):
        path = dist.joinpath(name)
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_router() -> APIRouter:
    env = _environment()
    version = _asset_version()
    router = APIRouter(include_in_schema=False)

    def features(request: Request) -> dict[str, bool]:
        """Which optional API routes this app has (from its OpenAPI document, built once)."""
        paths = request.app.openapi().get("paths", {})
        return {"alarms": "/v1/alarms" in paths, "stream": "/v1/stream" in paths}

    def render(
        request: Request,
        name: str,
        session: ConsoleSession | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = env.get_template(name).render(
            request=request,
            session=session,
            csrf=session.csrf_token if session else "",
            version=__version__,
            asset=version,
            features=features(request),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    async def need_session(request: Request) -> ConsoleSession:
        session = await current_session(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _Redirect(f"/login?next={target}")
        return session

    def platform_of(request: Request) -> Platform:
        platform: Platform = request.app.state.platform
        return platform

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> Response:
        return render(request, "login.html", None, next=safe_next(next), error=None)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await read_form(request)
        next_path = safe_next(form.get("next"))
        try:
            return await sign_in(request, form.get("api_key", ""), next_path)
        except HTTPException as exc:
            return render(
                request, "login.html", None, status=exc.status_code, next=next_path,
                error=str(exc.detail),
            )  # fmt: skip

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        return await sign_out(request, form.get("csrf", ""))

    @router.get("/", response_class=HTMLResponse)
    async def fleet_page(request: Request) -> Response:
        try:
            session = await need_session(request)
        except _Redirect as r:
            return r.response()
        rows = await data.fleet(platform_of(request))
        partial = "_fleet_table.html" if request.headers.get("hx-request") else "fleet.html"
        return render(request, partial, session, page="fleet", rows=rows)

    @router.get("/devices/{device}", response_class=HTMLResponse)
    async def device_page(request: Request, device: str) -> Response:
        try:
            session = await need_session(request)
        except _Redirect as r:
            return r.response()
        platform = platform_of(request)
        try:
            address = to_checksum_address(device)
        except ValueError:
            return render(request, "missing.html", session, status=404, what=device)
        record = await platform.store.devices.get(address)
        if record is None:
            return render(request, "missing.html", session, status=404, what=device)
        detail = await data.device_detail(platform, record)
        partial = "_readings_table.html" if request.headers.get("hx-request") else "device.html"
        return render(
            request, partial, session, page="fleet", device=record,
            did=did_pkh(platform.chain.deployment.chain_id, record.address), **detail,
        )  # fmt: skip

    @router.get("/anchoring", response_class=HTMLResponse)
    async def anchoring_page(request: Request) -> Response:
        try:
            session = await need_session(request)
        except _Redirect as r:
            return r.response()
        info = await data.anchoring(platform_of(request))
        partial = "_anchoring.html" if request.headers.get("hx-request") else "anchoring.html"
        return render(request, partial, session, page="anchoring", **info)

    @router.get("/admin", response_class=HTMLResponse)
    async def admin_page(request: Request) -> Response:
        try:
            session = await need_session(request)
        except _Redirect as r:
            return r.response()
        keys = await platform_of(request).store.api_keys.list()
        return render(request, "admin.html", session, page="admin", keys=keys[::-1])

    for name in ("alarms", "verify", "settlement"):
        _island_page(router, name, need_session, render)
    return router


def _island_page(router: APIRouter, name: str, need_session: Any, render: Any) -> None:
    async def page(request: Request) -> Response:
        try:
            session = await need_session(request)
        except _Redirect as r:
            return r.response()
        response: Response = render(request, f"{name}.html", session, page=name)
        return response

    router.add_api_route(f"/{name}", page, methods=["GET"], response_class=HTMLResponse)


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location

    def response(self) -> Response:
        return RedirectResponse(self.location, status_code=303)
