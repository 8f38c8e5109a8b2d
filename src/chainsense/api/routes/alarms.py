"""/v1/alarms: anomalies grouped per device while they continue, acknowledged and cleared.

States as ThingsBoard has them: ``active`` or ``cleared`` (by the detector when the condition
ends, or by an operator) and, independently, acknowledged or not. Acknowledging or clearing an
alarm twice is idempotent: the second call returns the alarm unchanged (200). An alarm's changes
are also sent on ``/v1/stream`` as ``event: alarm``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.params import CursorQuery, DeviceFilter, LimitQuery
from chainsense.platform import Platform
from chainsense.store import Alarm
from chainsense.telemetry.schemas import UnknownSchemaError

__all__ = ["AlarmPublic", "alarm_json", "router"]

router = APIRouter(prefix="/alarms", tags=["alarms"])

AlarmId = Annotated[int, Path(ge=1, lt=2**63, description="The alarm's id")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such alarm"}}


class AlarmPublic(BaseModel):
    id: int
    device: str
    schema_: str = Field(alias="schema", description="Schema id (0x-hex)")
    schema_name: str | None
    metrics: list[str] = Field(description="The metrics responsible, most responsible first")
    check: str = Field(description="limit, level, shift, stuck, joint or baseline")
    state: Literal["active", "cleared"]
    acknowledged: bool
    severity: Literal["critical", "major", "minor"]
    first_seen_ms: int
    last_seen_ms: int
    count: int = Field(description="Anomalous readings grouped in this alarm")
    max_score: float = Field(description="1.0 = the alarm point of the false-alarm rate")
    last_value: str | None = Field(description="The responsible metric's latest value (decimal)")
    expected_low: str | None
    expected_high: str | None
    reading_id: int | None = Field(description="The latest anomalous reading (its proof)")
    message: str
    acknowledged_at_ms: int | None
    cleared_at_ms: int | None


class AlarmPage(BaseModel):
    items: list[AlarmPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


def alarm_json(alarm: Alarm, platform: Platform) -> dict[str, Any]:
    try:
        schema_name: str | None = platform.schemas.by_id(alarm.schema).name
    except UnknownSchemaError:
        schema_name = None
    return {
        "id": alarm.id,
        "device": alarm.device,
        "schema": "0x" + alarm.schema.hex(),
        "schema_name": schema_name,
        "metrics": alarm.metrics,
        "check": alarm.check,
        "state": alarm.state,
        "acknowledged": alarm.acknowledged,
        "severity": alarm.severity,
        "first_seen_ms": alarm.first_seen_ms,
        "last_seen_ms": alarm.last_seen_ms,
        "count": alarm.count,
        "max_score": alarm.max_score,
        "last_value": alarm.last_value,
        "expected_low": alarm.expected_low,
        "expected_high": alarm.expected_high,
        "reading_id": alarm.reading_id,
        "message": alarm.message,
        "acknowledged_at_ms": alarm.acknowledged_at_ms,
        "cleared_at_ms": alarm.cleared_at_ms,
    }


@router.get("", response_model=AlarmPage, summary="Alarms, newest first")
async def list_alarms(
    platform: PlatformDep,
    _key: ReaderDep,
    state: Annotated[Literal["active", "cleared"] | None, Query()] = None,
    acknowledged: Annotated[bool | None, Query()] = None,
    device: DeviceFilter = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> dict[str, Any]:
    rows = await platform.store.alarms.query(
        state=state,
        acknowledged=acknowledged,
        device=to_checksum_address(device) if device else None,
        before_id=int(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [alarm_json(a, platform) for a in rows],
        "next_cursor": str(rows[-1].id) if more and rows else None,
    }


@router.get("/{alarm_id}", response_model=AlarmPublic, responses=_NOT_FOUND, summary="An alarm")
async def get_alarm(platform: PlatformDep, _key: ReaderDep, alarm_id: AlarmId) -> dict[str, Any]:
    alarm = await platform.store.alarms.get(alarm_id)
    if alarm is None:
        raise HTTPException(404, f"no alarm {alarm_id}")
    return alarm_json(alarm, platform)


@router.post(
    "/{alarm_id}/ack",
    response_model=AlarmPublic,
    responses=_NOT_FOUND,
    summary="Acknowledge an alarm (idempotent)",
)
async def ack_alarm(platform: PlatformDep, _key: OperatorDep, alarm_id: AlarmId) -> dict[str, Any]:
    alarm = await platform.store.alarms.ack(alarm_id, now_ms=int(time.time() * 1000))
    if alarm is None:
        raise HTTPException(404, f"no alarm {alarm_id}")
    if platform.ai is not None:
        await platform.ai.publish_alarm(alarm)
    return alarm_json(alarm, platform)


@router.post(
    "/{alarm_id}/clear",
    response_model=AlarmPublic,
    responses=_NOT_FOUND,
    summary="Clear an alarm (idempotent: clearing a cleared alarm returns it unchanged)",
)
async def clear_alarm(
    platform: PlatformDep, _key: OperatorDep, alarm_id: AlarmId
) -> dict[str, Any]:
    alarm = await platform.store.alarms.clear(alarm_id, now_ms=int(time.time() * 1000))
    if alarm is None:
        raise HTTPException(404, f"no alarm {alarm_id}")
    if platform.ai is not None:
        await platform.ai.publish_alarm(alarm)
    return alarm_json(alarm, platform)
