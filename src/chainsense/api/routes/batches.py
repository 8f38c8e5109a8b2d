"""/v1/batches and /v1/anchoring: the Merkle batches, their anchors, and how far anchoring lags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from chainsense.api.deps import PlatformDep, ReaderDep
from chainsense.api.errors import PROBLEM_JSON
from chainsense.api.params import CursorQuery, LimitQuery
from chainsense.provenance.models import AnchoringStatus, BatchPage, BatchPublic
from chainsense.store import BatchRecord, BatchState

router = APIRouter(prefix="/batches", tags=["provenance"])
status_router = APIRouter(prefix="/anchoring", tags=["provenance"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def _public(batch: BatchRecord) -> BatchPublic:
    return BatchPublic(
        id=batch.id,
        root="0x" + batch.root.hex(),
        reading_count=batch.reading_count,
        state=batch.state.value,
        chain_id=batch.chain_id,
        contract=batch.contract,
        sealed_at=batch.sealed_at.isoformat(),
        tx_hash=_hex(batch.tx_hash),
        block_number=batch.block_number,
        block_time=batch.block_time,
        anchored_at=batch.anchored_at.isoformat() if batch.anchored_at else None,
        attempts=batch.attempts,
        last_error=batch.last_error,
    )


@router.get("", response_model=BatchPage, summary="Merkle batches, oldest first")
async def list_batches(
    platform: PlatformDep,
    _key: ReaderDep,
    state: Annotated[BatchState | None, Query(description="sealed or anchored")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    order: Annotated[
        Literal["asc", "desc"],
        Query(description="By id: `asc` oldest first (default), `desc` newest first"),
    ] = "asc",
) -> BatchPage:
    rows = await platform.store.batches.find(
        state=state,
        after_id=int(cursor) if cursor else None,
        limit=limit + 1,
        newest_first=order == "desc",
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return BatchPage(
        items=[_public(b) for b in rows], next_cursor=str(rows[-1].id) if more and rows else None
    )


@router.get(
    "/{batch_id}",
    response_model=BatchPublic,
    summary="One batch",
    responses={404: _PROBLEM | {"description": "No such batch"}},
)
async def get_batch(
    batch_id: Annotated[int, Path(ge=1, lt=2**63)], platform: PlatformDep, _key: ReaderDep
) -> BatchPublic:
    batch = await platform.store.batches.get(batch_id)
    if batch is None:
        raise HTTPException(404, f"no batch with id {batch_id}")
    return _public(batch)


@status_router.get(
    "",
    response_model=AnchoringStatus,
    summary="Anchoring backlog and lag",
    description="How many stored readings are not anchored yet, how old the oldest is, and "
    "whether the chain answers. Ingestion goes on while the chain is down; this shows the lag.",
)
async def anchoring_status(platform: PlatformDep, _key: ReaderDep) -> AnchoringStatus:
    state, backlog = await platform.anchorer.status()
    totals = await platform.store.batches.totals()
    policy = platform.anchorer.policy
    running = here = state.running
    if not running and platform.anchor_leader is not None:
        # with several workers (or hosts) the anchorer runs in the role's leader, maybe not here
        running = await platform.anchor_leader.holder() is not None
    lag = 0.0
    if backlog.oldest_unanchored_at is not None:
        lag = max(0.0, (datetime.now(UTC) - backlog.oldest_unanchored_at).total_seconds())
    if here:
        chain_ok, failures, last_error = (
            state.chain_ok,
            state.consecutive_failures,
            state.last_error,
        )
    else:  # the leader's view, as it records it on the waiting batches
        chain_ok = totals.last_error is None
        failures, last_error = totals.failed_attempts, totals.last_error
    return AnchoringStatus(
        running=running,
        anchorer_here=here,
        chain_ok=chain_ok,
        consecutive_failures=failures,
        last_error=last_error,
        sealing_ok=state.sealing_error is None,
        blocked=state.blocked,
        unbatched_readings=backlog.unbatched_readings,
        sealed_batches=backlog.sealed_batches,
        sealed_readings=backlog.sealed_readings,
        backlog_readings=backlog.unbatched_readings + backlog.sealed_readings,
        lag_seconds=round(lag, 3),
        batches_sealed=totals.sealed,
        batches_anchored=totals.anchored,
        reanchored=state.reanchored,
        max_size=policy.max_size,
        max_age=policy.max_age,
        confirmations=policy.confirmations,
    )
