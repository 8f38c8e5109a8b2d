"""Probes: /healthz (the process is alive) and /readyz (it can do its work now).

``/readyz`` runs its checks at once, each bounded, so it answers within about
:data:`PROBE_TIMEOUT_S` seconds whatever hangs:

- ``database``: a read answers;
- ``database_writes``: writes work (:meth:`chainsense.store.Store.check_writes`: recent write
  failures, the free space of a SQLite disk, a small write when none happened lately);
- ``chain``: the RPC's head block, through the circuit breaker (an open circuit answers at once,
  saying when it probes next);
- ``dev_chain_state`` (with the dev chain only): the periodic state dump works; while it fails a
  restart would roll the chain back. Under ``serve --workers`` the dev chain is another process
  (``chainsense chain up``): the workers read the report it writes after every dump round, and
  a report older than five rounds (10 s at least) is failing too.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from chainsense.api.deps import PlatformDep
from chainsense.chain.devchain import read_dump_report
from chainsense.errors import ChainSenseError
from chainsense.platform import Platform

router = APIRouter(tags=["probes"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    chain_rpc_circuit: str
    """The chain RPC circuit breaker's state: closed, open or half_open."""


PROBE_TIMEOUT_S = 1.5


async def _database(platform: Platform) -> str:
    try:
        await platform.store.ping(timeout=PROBE_TIMEOUT_S)
    except ChainSenseError as exc:
        return f"failing: {exc}"
    return f"ok ({platform.store.dialect})"


async def _database_writes(platform: Platform) -> str:
    try:
        return await platform.store.check_writes(
            timeout=PROBE_TIMEOUT_S,
            min_free_bytes=platform.settings.min_free_disk_mb * 2**20,
        )
    except ChainSenseError as exc:
        return f"failing: {exc}"


async def _chain(platform: Platform) -> str:
    try:
        return f"ok (block {await platform.chain.client.probe(PROBE_TIMEOUT_S)})"
    except ChainSenseError as exc:
        return f"failing: {exc}"


def _dev_chain_state(platform: Platform) -> str | None:
    devchain = platform.chain.devchain
    if devchain is None:
        report = platform.settings.dev_chain_report
        if report is None:
            return None
        return read_dump_report(report, platform.settings.anvil_state_interval).line
    dumps = devchain.dumps
    now = time.monotonic()
    if dumps.failing_since is not None:
        saved = (
            "never saved"
            if dumps.last_saved is None
            else f"last saved {now - dumps.last_saved:.0f} s ago"
        )
        return (
            f"failing for {now - dumps.failing_since:.0f} s: {dumps.last_error} ({saved}; a "
            "restart now would roll the dev chain back to it)"
        )
    if dumps.last_saved is None:
        return "ok (first save pending)"
    return f"ok (saved {now - dumps.last_saved:.1f} s ago)"


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database (reads and writes), the chain and the dev chain's state saves work",
    responses={503: {"model": Readiness, "description": "A dependency is failing"}},
)
async def readyz(platform: PlatformDep) -> Readiness | JSONResponse:
    # Every probe runs at once, each bounded: a black-holed RPC or a hung database makes the
    # platform "not ready" within about PROBE_TIMEOUT_S, never a probe that hangs.
    database, writes, chain = await asyncio.gather(
        _database(platform), _database_writes(platform), _chain(platform)
    )
    checks: dict[str, str] = {"database": database, "database_writes": writes, "chain": chain}
    if (state := _dev_chain_state(platform)) is not None:
        checks["dev_chain_state"] = state
    ready = all(v.startswith("ok") for v in checks.values())
    body = Readiness(
        status="ready" if ready else "not ready",
        checks=checks,
        chain_rpc_circuit=platform.chain.client.breaker.state.value,
    )
    if ready:
        return body
    return JSONResponse(body.model_dump(), status_code=503)
