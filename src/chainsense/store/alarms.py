"""Alarms: a device's anomalies grouped while they continue, with ThingsBoard's states.

An alarm is ``active`` or ``cleared`` and, independently, acknowledged or not. The AI worker
opens, updates and clears alarms in the same transaction as its events and model states
(:meth:`AlarmRepository.apply`, called from ``AnomalyRepository.checkpoint``); operators
acknowledge and clear them (:meth:`ack`, :meth:`clear`). When an operator clears an alarm whose
condition continues, the worker's next update finds it cleared and opens a new alarm.

Clearing an alarm that is already cleared is idempotent (it is returned unchanged); so is
acknowledging an acknowledged one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.engine import Connection

from chainsense.store.engine import Database
from chainsense.store.records import checksum_address
from chainsense.store.schema import ai_alarms

__all__ = ["Alarm", "AlarmChange", "AlarmRepository", "apply_changes"]


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    device: str
    schema: bytes
    metrics: list[str]
    check: str
    state: str
    acknowledged: bool
    severity: str
    first_seen_ms: int
    last_seen_ms: int
    count: int
    max_score: float
    last_value: str | None
    expected_low: str | None
    expected_high: str | None
    reading_id: int | None
    message: str
    acknowledged_at_ms: int | None
    cleared_at_ms: int | None


@dataclass(slots=True)
class AlarmChange:
    """What the worker knows of one alarm after a chunk. ``alarm_id`` None opens a new one;
    ``cleared_at_ms`` set clears it. :meth:`AlarmRepository.apply` fills ``stored``."""

    alarm_id: int | None
    device: str
    schema: bytes
    metrics: list[str]
    check: str
    severity: str
    first_seen_ms: int
    last_seen_ms: int
    count: int
    max_score: float
    last_value: str | None
    expected_low: str | None
    expected_high: str | None
    reading_id: int | None
    message: str
    cleared_at_ms: int | None = None
    stored: Alarm | None = field(default=None)


_C = ai_alarms.c
_COLUMNS = (
    _C.id, _C.device, _C.schema, _C.metrics, _C.check, _C.state, _C.acknowledged, _C.severity,
    _C.first_seen_ms, _C.last_seen_ms, _C.count, _C.max_score, _C.last_value, _C.expected_low,
    _C.expected_high, _C.reading_id, _C.message, _C.acknowledged_at_ms, _C.cleared_at_ms,
)  # fmt: skip
_UPDATED = (
    "metrics", "check", "severity", "last_seen_ms", "count", "max_score", "last_value",
    "expected_low", "expected_high", "reading_id", "message",
)  # fmt: skip


def _alarm(row: Any) -> Alarm:
    values = list(row)
    values[3] = json.loads(values[3])
    values[6] = bool(values[6])
    return Alarm(*values)


def _fields(change: AlarmChange) -> dict[str, Any]:
    out = {f: getattr(change, f) for f in _UPDATED}
    out["metrics"] = json.dumps(change.metrics)
    return out


def apply_changes(conn: Connection, changes: Sequence[AlarmChange]) -> None:
    """Open, update or clear alarms inside the caller's (synchronous) write transaction; fills
    ``stored`` and ``alarm_id`` of each change.

    A change with an ``alarm_id`` updates that alarm if it is still active; otherwise (no id, or
    an operator cleared it meanwhile) it opens a new one. A handful of statements whatever the
    number of changes (the AI worker sends one per device and chunk): one query for which
    alarms are active, one executemany per shape of update, one multi-row INSERT ... RETURNING,
    one query reading the updated alarms back.
    """
    ids = [c.alarm_id for c in changes if c.alarm_id is not None]
    active: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        stmt = select(_C.id).where(_C.id.in_(ids[start : start + _CHUNK]), _C.state == "active")
        active.update(int(i) for i in conn.execute(stmt).scalars())
    updated = [c for c in changes if c.alarm_id in active]
    opened = [c for c in changes if c.alarm_id not in active]
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in updated:
        values = _fields(change)
        if change.cleared_at_ms is not None:
            values |= {"state": "cleared", "cleared_at_ms": change.cleared_at_ms}
        values["b_id"] = change.alarm_id
        shapes.setdefault(tuple(values), []).append(values)
    for params in shapes.values():  # the SET clause comes from the parameters' keys
        conn.execute(_UPDATE_ACTIVE, params)
    rows: dict[int, Any] = {}
    updated_ids = [c.alarm_id for c in updated]
    for start in range(0, len(updated_ids), _CHUNK):
        stmt2 = select(*_COLUMNS).where(_C.id.in_(updated_ids[start : start + _CHUNK]))
        rows.update((int(row[0]), row) for row in conn.execute(stmt2))
    for change in updated:
        assert change.alarm_id is not None
        change.stored = _alarm(rows[change.alarm_id])
    if opened:
        params = [
            {
                **_fields(change),
                "device": change.device,
                "schema": change.schema,
                "state": "active" if change.cleared_at_ms is None else "cleared",
                "acknowledged": False,
                "first_seen_ms": change.first_seen_ms,
                "cleared_at_ms": change.cleared_at_ms,
            }
            for change in opened
        ]
        for change, row in zip(opened, conn.execute(_INSERT_RETURNING, params), strict=True):
            change.stored = _alarm(row)
            change.alarm_id = change.stored.id


_CHUNK = 2_000  # ids per IN list
_UPDATE_ACTIVE = update(ai_alarms).where(_C.id == bindparam("b_id"), _C.state == "active")
_INSERT_RETURNING = insert(ai_alarms).returning(*_COLUMNS, sort_by_parameter_order=True)


class AlarmRepository:
    """Obtain it as ``store.alarms``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, alarm_id: int) -> Alarm | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(_C.id == alarm_id))).first()
        return None if row is None else _alarm(row)

    async def query(
        self,
        *,
        state: str | None = None,
        acknowledged: bool | None = None,
        device: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Alarm]:
        """Alarms newest first; page on with ``before_id`` (the last id of the previous page)."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected 1..10000, got {limit}")
        where: list[ColumnElement[bool]] = []
        if state is not None:
            where.append(_C.state == state)
        if acknowledged is not None:
            where.append(_C.acknowledged == acknowledged)
        if device is not None:
            where.append(_C.device == checksum_address(device))
        if before_id is not None:
            where.append(_C.id < before_id)
        stmt = select(*_COLUMNS).where(*where).order_by(_C.id.desc()).limit(limit)
        async with self._db.read() as conn:
            return [_alarm(row) for row in await conn.execute(stmt)]

    async def ack(self, alarm_id: int, *, now_ms: int) -> Alarm | None:
        """Acknowledge (idempotent); None when there is no such alarm."""
        async with self._db.write() as conn:
            await conn.execute(
                update(ai_alarms)
                .where(_C.id == alarm_id, _C.acknowledged.is_(False))
                .values(acknowledged=True, acknowledged_at_ms=now_ms)
            )
        return await self.get(alarm_id)

    async def clear(self, alarm_id: int, *, now_ms: int) -> Alarm | None:
        """Clear (idempotent); None when there is no such alarm."""
        async with self._db.write() as conn:
            await conn.execute(
                update(ai_alarms)
                .where(_C.id == alarm_id, _C.state == "active")
                .values(state="cleared", cleared_at_ms=now_ms)
            )
        return await self.get(alarm_id)
