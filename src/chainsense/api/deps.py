"""FastAPI dependencies, as Annotated aliases so handlers read like plain functions.

Operators authenticate with an API key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``)
whose scope is at least what the route needs: ``reader`` < ``operator`` < ``admin``. Devices need
no key: their signature is their authentication.

The console signs in once with a key and then sends a session cookie instead
(``routes/session.py``). A request authenticated by that cookie that changes state (any method
but GET, HEAD, OPTIONS) must also carry the session's CSRF token in ``X-CSRF-Token`` and, when
the browser names one, come from the API's own origin. A request with a key header never uses
the cookie.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from chainsense.chain.runtime import ChainContext
from chainsense.config import Settings
from chainsense.platform import Platform
from chainsense.store import ApiKeyRecord

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AdminDep",
    "ChainDep",
    "OperatorDep",
    "PlatformDep",
    "ReaderDep",
    "SettingsDep",
    "same_origin",
]

SCOPE_RANK = {"reader": 0, "operator": 1, "admin": 2}
SESSION_COOKIE = "cs_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cs_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key: cs_...")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="A console session (POST /v1/session); changes also need `X-CSRF-Token`.",
)


# The dependencies are coroutines, not plain functions: FastAPI runs a plain dependency in a
# worker thread, one thread hop per request for an attribute lookup (seen in a profile under
# 200 devices: 12% of the event loop's time in solve_dependencies).
async def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def _chain(request: Request) -> ChainContext:
    platform: Platform = request.app.state.platform
    return platform.chain


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PlatformDep = Annotated[Platform, Depends(_platform)]
ChainDep = Annotated[ChainContext, Depends(_chain)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (``Origin``, else
    ``Sec-Fetch-Site``); True when it matches or the client names none (not a browser)."""
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")
    site = request.headers.get("sec-fetch-site")
    return site in (None, "same-origin", "none")


async def _from_cookie(request: Request, platform: Platform, token: str) -> ApiKeyRecord:
    session = await platform.store.sessions.get(token)
    if session is None:
        raise HTTPException(
            401,
            "the console session has ended (signed out, expired, or its API key was revoked): "
            "sign in again",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER.lower(), "")
        if not same_origin(request) or not hmac.compare_digest(
            sent.encode(), session.csrf_token.encode()
        ):
            raise HTTPException(
                403,
                f"a change made with the console session needs its CSRF token in {CSRF_HEADER} "
                "and must come from the console's own origin",
            )
    return session.key


def _require(scope: str):  # type: ignore[no-untyped-def]
    async def check(
        request: Request,
        platform: PlatformDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
        cookie: Annotated[str | None, Security(_cookie)],
    ) -> ApiKeyRecord:
        key = bearer.credentials if bearer is not None else header
        record: ApiKeyRecord | None
        if not key and cookie:
            record = await _from_cookie(request, platform, cookie)
        else:
            if not key:
                raise HTTPException(
                    401,
                    "missing API key: send `Authorization: Bearer <key>` "
                    "(create one with `chainsense apikey create`)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            record = await platform.store.api_keys.authenticate(key)
            if record is None:
                raise HTTPException(
                    401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
                )
        if SCOPE_RANK[record.scope] < SCOPE_RANK[scope]:
            raise HTTPException(
                403,
                f"this route needs the {scope} scope; the key {record.name!r} is {record.scope}",
            )
        return record

    return check


ReaderDep = Annotated[ApiKeyRecord, Depends(_require("reader"))]
OperatorDep = Annotated[ApiKeyRecord, Depends(_require("operator"))]
AdminDep = Annotated[ApiKeyRecord, Depends(_require("admin"))]
