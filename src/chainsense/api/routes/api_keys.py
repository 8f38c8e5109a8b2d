"""/v1/api-keys: list, create and revoke operators' API keys (admin scope).

A key is shown once, in the answer to its creation; only its SHA-256 is stored. The first admin
key cannot come from here: `chainsense apikey create --local` writes it into the platform's
database on the server's machine (see docs/cli.md, "The first API key").
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from chainsense.api.deps import AdminDep, PlatformDep
from chainsense.store import ApiKeyRecord

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


class ApiKeyIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="Who or what uses the key"
    )
    scope: Literal["admin", "operator", "reader"] = "reader"


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's public prefix (cs_<12 hex>), to recognize it")
    scope: str
    created_at: str
    revoked_at: str | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown this once, never stored")


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]


def _public(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "scope": record.scope,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@router.get("", response_model=ApiKeyList, summary="Every API key (never the keys themselves)")
async def list_keys(platform: PlatformDep, _key: AdminDep) -> ApiKeyList:
    records = await platform.store.api_keys.list()
    return ApiKeyList(items=[ApiKeyPublic.model_validate(_public(r)) for r in records])


@router.post("", response_model=ApiKeyCreated, status_code=201, summary="Create a key (shown once)")
async def create_key(body: ApiKeyIn, platform: PlatformDep, _key: AdminDep) -> ApiKeyCreated:
    record, key = await platform.store.api_keys.create(name=body.name, scope=body.scope)
    return ApiKeyCreated.model_validate({**_public(record), "key": key})


@router.post(
    "/{key_id}/revoke",
    response_model=ApiKeyPublic,
    summary="Revoke a key",
    responses={
        404: {"description": "No active key with this id"},
        409: {"description": "The key making the request cannot revoke itself"},
    },
)
async def revoke_key(
    key_id: Annotated[int, Path(ge=1, lt=2**63)], platform: PlatformDep, caller: AdminDep
) -> ApiKeyPublic:
    if key_id == caller.id:
        raise HTTPException(409, "a key cannot revoke itself (that would lock its holder out)")
    if not await platform.store.api_keys.revoke(key_id):
        raise HTTPException(404, f"no active API key #{key_id}")
    record = next(r for r in await platform.store.api_keys.list() if r.id == key_id)
    return ApiKeyPublic.model_validate(_public(record))
