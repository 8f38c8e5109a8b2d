"""/v1/anomalies (stored events, filtered and paged), /v1/stream (live, Server-Sent Events) and
/v1/ai/status (the AI worker's cursor, lag and rate)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from chainsense.ai.service import AIService
from chainsense.ai.webhook import event_json
from chainsense.api.deps import PlatformDep, ReaderDep
from chainsense.api.params import CursorQuery, DeviceFilter, LimitQuery, SinceQuery, UntilQuery
from chainsense.api.routes.alarms import alarm_json
from chainsense.platform import Platform
from chainsense.store import Alarm, StoredAnomaly
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS, UnknownSchemaError

router = APIRouter(tags=["anomalies"])

_DISABLED: dict[int | str, dict[str, Any]] = {503: {"description": "The AI worker is disabled"}}

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_SCHEMA = r"^(0x[0-9a-fA-F]{64}|[A-Za-z0-9_.\-]{1,100})$"


class AnomalyPublic(BaseModel):
    id: int
    reading_id: int = Field(description="The reading; its proof is at `proof`")
    device: str
    schema_: str = Field(alias="schema", description="Schema id (0x-hex)")
    schema_name: str | None
    metric: str
    timestamp: int = Field(description="Device time of the reading (ms)")
    value: float
    score: float = Field(description="1.0 = the alarm point at the default sensitivity")
    expected: float
    low: float = Field(description="Lowest value expected at that time")
    high: float = Field(description="Highest value expected at that time")
    check: str = Field(description="limit, level, shift, stuck, joint or baseline")
    detector: str
    explanation: str
    proof: str
    created_at: str


class AnomalyPage(BaseModel):
    items: list[AnomalyPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )


class AIStatus(BaseModel):
    cursor: int = Field(description="Last reading id the AI worker has processed")
    newest_reading_id: int
    lag_readings: int = Field(description="Readings stored but not yet analysed")
    processed: int
    events: int
    points_per_second: float = Field(description="Values analysed per second in the last step")
    streams: int
    subscribers: int
    dropped_live_events: int
    running: bool = Field(description="Whether the AI worker runs, here or in another process")
    last_error: str | None
    worker_here: bool = Field(
        description="Whether this process runs the AI worker. With `serve --workers N` only one "
        "does: another process's answer gives the cursor, newest id and lag from the database "
        "(the worker saves its cursor at each checkpoint) and its own zeros for the counts and "
        "rates"
    )


def public(event: StoredAnomaly, platform: Platform) -> dict[str, Any]:
    body = event_json(event)
    try:
        schema = platform.schemas.by_id(event.schema)
        body["schema_name"] = schema.name
        unit = schema.metric(event.metric).unit
        expected = "outside the hard limit" if event.check == "limit" else "expected"
        body["explanation"] = (
            f"{event.metric} = {event.value:g} {unit}, {expected} {event.low:.4g} to "
            f"{event.high:.4g} {unit} ({event.check})"
        )
    except (UnknownSchemaError, ValueError):
        body["schema_name"] = None
    return body


def _service(platform: Platform) -> AIService:
    if platform.ai is None:
        raise HTTPException(503, "the AI worker is disabled (CHAINSENSE_AI_ENABLED=false)")
    return platform.ai


def _schema_id(schema: str | None) -> bytes | None:
    """A schema id from its 0x-hex form or a built-in schema's name (an unknown name or id
    simply matches no event)."""
    if schema is None:
        return None
    if schema.startswith("0x") and len(schema) == 66:
        return bytes.fromhex(schema[2:])
    try:
        return BUILTIN_SCHEMAS.by_name(schema).id
    except UnknownSchemaError:
        return bytes(32)


@router.get("/anomalies", response_model=AnomalyPage, summary="Stored anomaly events")
async def list_anomalies(
    platform: PlatformDep,
    _key: ReaderDep,
    device: DeviceFilter = None,
    schema: Annotated[
        str | None, Query(min_length=1, pattern=_SCHEMA, description="Schema name or 0x-hex id")
    ] = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> dict[str, Any]:
    rows = await platform.store.anomalies.query(
        device=to_checksum_address(device) if device else None,
        schema=_schema_id(schema),
        since_ms=since,
        until_ms=until,
        after_id=int(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [public(r, platform) for r in rows],
        "next_cursor": str(rows[-1].id) if more and rows else None,
    }


@router.get(
    "/ai/status",
    response_model=AIStatus,
    summary="The AI worker: cursor, lag, rate",
    responses=_DISABLED,
)
async def ai_status(platform: PlatformDep, _key: ReaderDep) -> dict[str, Any]:
    return await _service(platform).shared_status(platform.ai_leader)


@router.get(
    "/stream",
    summary="Live anomaly events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_DISABLED},
)
async def stream(
    request: Request,
    platform: PlatformDep,
    _key: ReaderDep,
    device: Annotated[str | None, Query(pattern=_ADDRESS)] = None,
    schema: Annotated[
        str | None, Query(min_length=1, pattern=_SCHEMA, description="Schema name or 0x-hex id")
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, lt=2**63, description="Replay stored events after this id first"),
    ] = None,
) -> StreamingResponse:
    """Each event is ``id: <anomaly id>``, ``event: anomaly``, ``data: <AnomalyPublic JSON>``;
    every change of an alarm (opened, updated, cleared) is ``event: alarm`` with the Alarm JSON
    of ``GET /v1/alarms/{alarm_id}`` (no ``id:``: alarms are not replayed).
    Reconnect with ``Last-Event-ID`` (or ``after``) to miss nothing; a comment line is sent
    every 15 s to keep proxies from closing the connection."""
    service = _service(platform)
    wanted_device = to_checksum_address(device) if device else None
    wanted_schema = _schema_id(schema)
    last = request.headers.get("last-event-id")
    start = int(last) if last and last.isdigit() else after
    queue = service.subscribe()  # before the replay, so nothing falls in between

    def matches(e: StoredAnomaly | Alarm) -> bool:
        return (wanted_device is None or e.device == wanted_device) and (
            wanted_schema is None or e.schema == wanted_schema
        )

    def frame(e: StoredAnomaly) -> str:
        return f"id: {e.id}\nevent: anomaly\ndata: {json.dumps(public(e, platform))}\n\n"

    async def events() -> AsyncIterator[str]:
        sent = start or 0
        try:
            yield ": connected\n\n"
            if start is not None:
                while True:
                    page = await platform.store.anomalies.query(
                        device=wanted_device, schema=wanted_schema, after_id=sent, limit=500
                    )
                    for e in page:
                        sent = e.id
                        yield frame(e)
                    if len(page) < 500:
                        break
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if isinstance(item, Alarm):
                    if matches(item):
                        body = json.dumps(alarm_json(item, platform))
                        yield f"event: alarm\ndata: {body}\n\n"
                elif item.id > sent and matches(item):
                    sent = item.id
                    yield frame(item)
        finally:
            service.unsubscribe(queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
