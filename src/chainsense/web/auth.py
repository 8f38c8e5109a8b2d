"""Console sign-in for pages: the session cookie, the sign-in form and sign-out."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from chainsense.api.deps import SESSION_COOKIE, same_origin
from chainsense.api.routes.session import CSRF_COOKIE, start_session
from chainsense.platform import Platform
from chainsense.store import ConsoleSession

__all__ = ["current_session", "read_form", "safe_next", "sign_in", "sign_out"]


async def current_session(request: Request) -> ConsoleSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    platform: Platform = request.app.state.platform
    return await platform.store.sessions.get(token)


async def read_form(request: Request, limit: int = 4096) -> dict[str, str]:
    """A small urlencoded form (no multipart), first value per field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {k: v[0] for k, v in fields.items()}


def safe_next(value: str | None) -> str:
    """A local path to go back to after signing in (never another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


async def sign_in(request: Request, api_key: str, next_path: str) -> Response:
    """Exchange the key for a session (401/403 as HTTPException) and go to ``next_path``."""
    platform: Platform = request.app.state.platform
    response = RedirectResponse(safe_next(next_path), status_code=303)
    await start_session(request, response, platform, api_key)
    return response


async def sign_out(request: Request, csrf: str) -> Response:
    """End the session if the form carries its CSRF token and comes from this origin."""
    session = await current_session(request)
    token = request.cookies.get(SESSION_COOKIE)
    response = RedirectResponse("/login", status_code=303)
    if session is not None and token is not None:
        if not same_origin(request) or not hmac.compare_digest(csrf, session.csrf_token):
            return Response("sign-out needs the page's CSRF token", status_code=403)
        platform: Platform = request.app.state.platform
        await platform.store.sessions.end(token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response
