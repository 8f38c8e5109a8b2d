"""/v1/api-keys: list, create and revoke operators' API keys (admin scope).

A key is shown once, in the answer to its creation; only its SHA-256 is stored. The first admin
key cannot come from here: `chainsense apikey create --local` writes it into the platform's
database on the server's machine (see docs/cli.md, "The first API key").
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from chainsense.api.deps import AdminDep, PlatformDep
from chainsense.api.inputs import InputModel
from chainsense.store import ApiKeyRecord, Scope

__all__ = ["router"]

router = APIRouter(prefix="/api-keys", tags=["api keys"])

KeyId = Annotated[int, Path(ge=1, lt=2**63, description="The key's id")]


class ApiKeyIn(InputModel):
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"\S",
        description="Who or what uses the key",
        examples=["dashboard"],
    )
    scope: Scope = Field(default=Scope.READER, examples=["reader"])


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The public part: keys read cs_<prefix>_<secret>")
    scope: str
    created_at: str
    revoked_at: str | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown once, it cannot be recovered")


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]


def _public(record: ApiKeyRecord) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        scope=record.scope.value,
        created_at=record.created_at.isoformat(),
        revoked_at=record.revoked_at.isoformat() if record.revoked_at else None,
    )


@router.get("", response_model=ApiKeyList, summary="Every API key, revoked ones included")
async def list_keys(platform: PlatformDep, _key: AdminDep) -> ApiKeyList:
    return ApiKeyList(items=[_public(r) for r in await platform.store.api_keys.list()])


@router.post("", status_code=201, response_model=ApiKeyCreated, summary="Create an API key")
async def create_key(body: ApiKeyIn, platform: PlatformDep, _key: AdminDep) -> ApiKeyCreated:
    record, key = await platform.store.api_keys.create(name=body.name.strip(), scope=body.scope)
    return ApiKeyCreated(**_public(record).model_dump(), key=key)


@router.post(
    "/{key_id}/revoke",
    response_model=ApiKeyPublic,
    summary="Revoke an API key: it and every console session made from it stop working",
    responses={
        404: {"description": "No API key with this id"},
        409: {"description": "Already revoked, or the key making the request (no self-revoke)"},
    },
)
async def revoke_key(key_id: KeyId, platform: PlatformDep, caller: AdminDep) -> ApiKeyPublic:
    if key_id == caller.id:
        raise HTTPException(409, "a key cannot revoke itself (that would lock its holder out)")
    keys = {r.id: r for r in await platform.store.api_keys.list()}
    if key_id not in keys:
        raise HTTPException(404, f"no API key with id {key_id}")
    if not await platform.store.api_keys.revoke(key_id):
        raise HTTPException(409, f"API key {key_id} is already revoked")
    keys = {r.id: r for r in await platform.store.api_keys.list()}
    return _public(keys[key_id])
