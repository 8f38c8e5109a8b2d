"""Probes: /healthz (the process is alive) and /readyz (its dependencies answer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from chainsense.api.deps import PlatformDep
from chainsense.errors import ChainSenseError
from chainsense.platform import Platform

router = APIRouter(tags=["probes"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


PROBE_TIMEOUT_S = 1.5


async def _database(platform: Platform) -> str:
    try:
        await platform.store.ping(timeout=PROBE_TIMEOUT_S)
    except ChainSenseError as exc:
        return f"failing: {exc}"
    return f"ok ({platform.store.dialect})"


async def _chain(platform: Platform) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return f"ok (block {await platform.chain.client.block_number()})"
    except TimeoutError:
        return f"failing: the chain RPC did not answer within {PROBE_TIMEOUT_S:g} s"
    except ChainSenseError as exc:
        return f"failing: {exc}"


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
    # Both probes run at once, each bounded: a black-holed RPC or a hung database makes the
    # platform "not ready" within PROBE_TIMEOUT_S, never a probe that hangs.
    database, chain = await asyncio.gather(_database(platform), _chain(platform))
    checks: dict[str, str] = {"database": database, "chain": chain}
    ready = all(v.startswith("ok") for v in checks.values())
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    if ready:
        return body
    return JSONResponse(body.model_dump(), status_code=503)
