"""The AI layer's storage: anomaly events, model states and worker cursors.

:meth:`AnomalyRepository.checkpoint` writes a worker's new events, its changed model states and
its cursor in one transaction, so after a crash the worker resumes exactly where its saved
models are, replays the readings after that, and stores no event twice (one per reading and
metric).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from chainsense.store.alarms import AlarmChange, apply_changes
from chainsense.store.engine import Database
from chainsense.store.records import checksum_address
from chainsense.store.schema import ai_anomalies, ai_cursors, ai_models, readings

__all__ = ["AnomalyRepository", "NewAnomaly", "StoredAnomaly"]


@dataclass(frozen=True, slots=True)
class NewAnomaly:
    reading_id: int
    device: str
    schema: bytes
    metric: str
    timestamp: int
    value: float
    score: float
    expected: float
    low: float
    high: float
    check: str
    detector: str


@dataclass(frozen=True, slots=True)
class StoredAnomaly(NewAnomaly):
    id: int
    created_at: datetime


_COLUMNS = (
    ai_anomalies.c.reading_id,
    ai_anomalies.c.device,
    ai_anomalies.c.schema,
    ai_anomalies.c.metric,
    ai_anomalies.c.timestamp,
    ai_anomalies.c.value,
    ai_anomalies.c.score,
    ai_anomalies.c.expected,
    ai_anomalies.c.low,
    ai_anomalies.c.high,
    ai_anomalies.c.check,
    ai_anomalies.c.detector,
    ai_anomalies.c.id,
    ai_anomalies.c.created_at,
)

ModelKey = tuple[str, str, str]
"""(device, metric, model)."""


class AnomalyRepository:
    """Obtain it as ``store.anomalies``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)

    async def checkpoint(
        self,
        *,
        worker: str,
        cursor: int,
        events: Sequence[NewAnomaly],
        states: Mapping[ModelKey, dict[str, Any] | str],
        alarms: Sequence[AlarmChange] = (),
    ) -> list[StoredAnomaly]:
        """Store ``events`` (skipping any already stored), upsert ``states`` (each a dict, or
        its JSON already encoded: ``json.dumps(state, separators=(",", ":"))``), apply the
        ``alarms`` changes (each gets its ``stored`` alarm), move the cursor; one transaction.
        Returns the events that were new, with their ids."""
        now = datetime.now(UTC)
        # The model states are hundreds of kilobytes of JSON per chunk: encoded before the
        # write lock is taken, not while other writers (the group commit) wait for it.
        rows = await asyncio.to_thread(_state_rows, states, now) if states else []
        return await self._db.run_write(
            _checkpoint_transaction, self._insert, worker, cursor, events, rows, alarms, now
        )

    async def put_state(self, key: ModelKey, state: dict[str, Any]) -> None:
        """Upsert one saved state (a setting made through the API, outside the worker's
        checkpoints)."""
        device, metric, model = key
        upsert = self._insert(ai_models).values(
            device=device,
            metric=metric,
            model=model,
            state=json.dumps(state, separators=(",", ":")),
            updated_at=datetime.now(UTC),
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=["device", "metric", "model"],
            set_={"state": upsert.excluded.state, "updated_at": upsert.excluded.updated_at},
        )
        async with self._db.write() as conn:
            await conn.execute(upsert)

    async def cursor(self, worker: str) -> int:
        """The last reading id the worker processed (0 if none)."""
        async with self._db.read() as conn:
            value = (
                await conn.execute(
                    select(ai_cursors.c.reading_id).where(ai_cursors.c.name == worker)
                )
            ).scalar_one_or_none()
        return int(value or 0)

    async def newest_reading_id(self) -> int:
        async with self._db.read() as conn:
            return int((await conn.execute(select(func.max(readings.c.id)))).scalar() or 0)

    async def states(
        self, *, device: str | None = None, model: str | None = None
    ) -> dict[ModelKey, dict[str, Any]]:
        """Every saved model state, or those of one device and/or model kind."""
        stmt = select(ai_models.c.device, ai_models.c.metric, ai_models.c.model, ai_models.c.state)
        if device is not None:
            stmt = stmt.where(ai_models.c.device == checksum_address(device))
        if model is not None:
            stmt = stmt.where(ai_models.c.model == model)
        async with self._db.read() as conn:
            return {(d, m, k): json.loads(s) for d, m, k, s in await conn.execute(stmt)}

    async def delete_states(self, device: str, models: Sequence[str]) -> int:
        """Delete ``device``'s saved states of these model kinds; how many there were."""
        async with self._db.write() as conn:
            done = await conn.execute(
                delete(ai_models).where(
                    ai_models.c.device == checksum_address(device),
                    ai_models.c.model.in_(list(models)),
                )
            )
        return int(done.rowcount or 0)

    async def changed_states(
        self, models: Sequence[str], since: datetime
    ) -> list[tuple[ModelKey, dict[str, Any], datetime]]:
        """The saved states of these model kinds written at or after ``since``, oldest first,
        each with its ``updated_at``."""
        stmt = (
            select(ai_models.c.device, ai_models.c.metric, ai_models.c.model, ai_models.c.state,
                   ai_models.c.updated_at)
            .where(ai_models.c.model.in_(list(models)), ai_models.c.updated_at >= since)
            .order_by(ai_models.c.updated_at)
        )  # fmt: skip
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [((d, m, k), json.loads(s), at) for d, m, k, s, at in rows]

    async def get(self, anomaly_id: int) -> StoredAnomaly | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(*_COLUMNS).where(ai_anomalies.c.id == anomaly_id))
            ).first()
        return None if row is None else StoredAnomaly(*tuple(row))

    async def query(
        self,
        *,
        device: str | None = None,
        schema: bytes | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredAnomaly]:
        """Events ordered by id (oldest first); ``since_ms`` inclusive, ``until_ms`` exclusive
        (reading timestamps); page on with ``after_id``."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected 1..10000, got {limit}")
        where: list[ColumnElement[bool]] = []
        if device is not None:
            where.append(ai_anomalies.c.device == checksum_address(device))
        if schema is not None:
            where.append(ai_anomalies.c.schema == schema)
        if since_ms is not None:
            where.append(ai_anomalies.c.timestamp >= since_ms)
        if until_ms is not None:
            where.append(ai_anomalies.c.timestamp < until_ms)
        if after_id is not None:
            where.append(ai_anomalies.c.id > after_id)
        stmt = select(*_COLUMNS).where(*where).order_by(ai_anomalies.c.id).limit(limit)
        async with self._db.read() as conn:
            return [StoredAnomaly(*tuple(row)) for row in await conn.execute(stmt)]


def _state_rows(
    states: Mapping[ModelKey, dict[str, Any] | str], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "device": d,
            "metric": m,
            "model": k,
            "state": s if isinstance(s, str) else json.dumps(s, separators=(",", ":")),
            "updated_at": now,
        }
        for (d, m, k), s in states.items()
    ]


def _checkpoint_transaction(
    conn: Connection,
    insert_for: Callable[[Any], Any],
    worker: str,
    cursor: int,
    events: Sequence[NewAnomaly],
    states: list[dict[str, Any]],
    alarms: Sequence[AlarmChange],
    now: datetime,
) -> list[StoredAnomaly]:
    """The body of :meth:`AnomalyRepository.checkpoint`'s write transaction (``states`` as rows
    of ai_models)."""
    stored: list[StoredAnomaly] = []
    for event in events:
        stmt: Insert = (
            insert_for(ai_anomalies)
            .values(**{f: getattr(event, f) for f in NewAnomaly.__slots__}, created_at=now)
            .on_conflict_do_nothing(index_elements=["reading_id", "metric"])
            .returning(ai_anomalies.c.id)
        )
        new_id = conn.execute(stmt).scalar_one_or_none()
        if new_id is not None:
            fields = {f: getattr(event, f) for f in NewAnomaly.__slots__}
            stored.append(StoredAnomaly(**fields, id=new_id, created_at=now))
    if states:
        upsert = insert_for(ai_models)
        upsert = upsert.on_conflict_do_update(
            index_elements=["device", "metric", "model"],
            set_={"state": upsert.excluded.state, "updated_at": upsert.excluded.updated_at},
        )
        conn.execute(upsert, states)
    if alarms:
        apply_changes(conn, alarms)
    upsert_cursor = insert_for(ai_cursors).values(name=worker, reading_id=cursor)
    upsert_cursor = upsert_cursor.on_conflict_do_update(
        index_elements=["name"], set_={"reading_id": upsert_cursor.excluded.reading_id}
    )
    conn.execute(upsert_cursor)
    return stored
