"""FastAPI dependencies, as Annotated aliases so handlers read like plain functions.

Operators authenticate with an API key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``)
whose scope is at least what the route needs: ``reader`` < ``operator`` < ``admin``. Devices need
no key: their signature is their authentication.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from chainsense.chain.runtime import ChainContext
from chainsense.config import Settings
from chainsense.platform import Platform
from chainsense.store import ApiKeyRecord

__all__ = ["AdminDep", "ChainDep", "OperatorDep", "PlatformDep", "ReaderDep", "SettingsDep"]

SCOPE_RANK = {"reader": 0, "operator": 1, "admin": 2}

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cs_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key: cs_...")


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _chain(request: Request) -> ChainContext:
    return _platform(request).chain


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PlatformDep = Annotated[Platform, Depends(_platform)]
ChainDep = Annotated[ChainContext, Depends(_chain)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _require(scope: str):  # type: ignore[no-untyped-def]
    async def check(
        platform: PlatformDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
    ) -> ApiKeyRecord:
        key = bearer.credentials if bearer is not None else header
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
