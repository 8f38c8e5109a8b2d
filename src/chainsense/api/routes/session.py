"""/v1/session: the console signs in with an API key and gets a session cookie.

``POST /v1/session`` with ``{"api_key": "cs_..."}`` sets two cookies: ``cs_session`` (HttpOnly,
SameSite=Strict, Secure over HTTPS: the session) and ``cs_csrf`` (readable by the page's
script, SameSite=Strict: the CSRF token it echoes in ``X-CSRF-Token`` on every change).
``DELETE /v1/session`` signs out. The session acts with the key's scope and ends when the key
is revoked.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, HTTPException, Request, Response
from pydantic import BaseModel, Field

from chainsense.api.deps import CSRF_HEADER, SESSION_COOKIE, PlatformDep, ReaderDep, same_origin
from chainsense.api.errors import PROBLEM_JSON
from chainsense.store import ConsoleSession

__all__ = ["CSRF_COOKIE", "router", "start_session"]

router = APIRouter(prefix="/session", tags=["session"])

CSRF_COOKIE = "cs_csrf"


class SignIn(BaseModel):
    api_key: str = Field(min_length=1, max_length=200, description="An API key: cs_...")


class SessionPublic(BaseModel):
    name: str = Field(description="The API key's name")
    scope: str
    csrf_token: str | None = Field(
        default=None, description=f"Send it in {CSRF_HEADER} with every change"
    )
    expires_at: str | None = None


def _set_cookies(request: Request, response: Response, token: str, session: ConsoleSession) -> None:
    secure = request.url.scheme == "https"
    max_age = int(request.app.state.settings.session_lifetime)
    common = {"max_age": max_age, "path": "/", "secure": secure, "samesite": "strict"}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, session.csrf_token, httponly=False, **common)  # type: ignore[arg-type]


async def start_session(
    request: Request, response: Response, platform: PlatformDep, api_key: str
) -> ConsoleSession:
    """Exchange ``api_key`` for a session and set its cookies on ``response``; 401 if the key
    is unknown or revoked, 403 from another origin."""
    if not same_origin(request):
        raise HTTPException(403, "sign in from the console's own origin")
    record = await platform.store.api_keys.authenticate(api_key.strip())
    if record is None:
        raise HTTPException(401, "unknown or revoked API key")
    await platform.store.sessions.purge_expired()
    token, session = await platform.store.sessions.create(
        record, lifetime_s=platform.settings.session_lifetime
    )
    _set_cookies(request, response, token, session)
    return session


_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


@router.post(
    "",
    response_model=SessionPublic,
    summary="Sign in: exchange an API key for a cookie",
    responses={
        401: _PROBLEM | {"description": "Unknown or revoked API key"},
        403: _PROBLEM | {"description": "Sent from another origin"},
    },
)
async def sign_in(
    body: SignIn, request: Request, response: Response, platform: PlatformDep
) -> SessionPublic:
    session = await start_session(request, response, platform, body.api_key)
    return SessionPublic(
        name=session.key.name,
        scope=session.key.scope.value,
        csrf_token=session.csrf_token,
        expires_at=session.expires_at.isoformat(),
    )


@router.get("", response_model=SessionPublic, summary="Who is signed in")
async def whoami(key: ReaderDep) -> SessionPublic:
    return SessionPublic(name=key.name, scope=key.scope.value)


@router.delete(
    "",
    status_code=204,
    summary="Sign out: the session ends",
    responses={403: _PROBLEM | {"description": "Without the session's CSRF token"}},
)
async def sign_out(
    request: Request,
    platform: PlatformDep,
    token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
) -> Response:
    if token:
        session = await platform.store.sessions.get(token)
        sent = request.headers.get(CSRF_HEADER.lower(), "")
        if session is not None and (
            not same_origin(request) or not hmac.compare_digest(sent, session.csrf_token)
        ):
            raise HTTPException(403, f"signing out needs the session's {CSRF_HEADER}")
        await platform.store.sessions.end(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response
