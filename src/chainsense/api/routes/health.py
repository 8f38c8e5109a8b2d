"""Probes: /healthz (the process is alive) and /readyz (its dependencies answer)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from chainsense.api.deps import PlatformDep
from chainsense.errors import ChainSenseError

router = APIRouter(tags=["probes"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the chain answer",
    responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
)
async def readyz(platform: PlatformDep) -> Readiness | JSONResponse:
    checks: dict[str, str] = {}
    try:
        await platform.store.ping()
        checks["database"] = f"ok ({platform.store.dialect})"
    except ChainSenseError as exc:
        checks["database"] = f"failing: {exc}"
    try:
        checks["chain"] = f"ok (block {await platform.chain.client.block_number()})"
    except ChainSenseError as exc:
        checks["chain"] = f"failing: {exc}"
    ready = all(v.startswith("ok") for v in checks.values())
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    if ready:
        return body
    return JSONResponse(body.model_dump(), status_code=503)
