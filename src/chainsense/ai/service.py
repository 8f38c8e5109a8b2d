"""The AI worker: runs beside ingestion and never holds an acknowledgement up.

Design: ingestion acknowledges after its commit and only *notifies* this worker (``notify`` sets
an event; nothing waits). The worker tails the readings table by id from a persisted cursor, so
the readings table itself is its queue: nothing is lost when it falls behind or restarts, and the
backlog is a figure (newest id - cursor, see :meth:`AIService.status`) instead of a buffer that
fills. Each chunk is scored in a worker thread (the event loop keeps answering), then its new
events, the changed model states and the cursor are committed together, and the stored events
are published to live subscribers (``/v1/stream``) and the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chainsense.ai.forecast import SeasonalProfile
from chainsense.ai.maintenance import DegradationTrend, RemainingLife
from chainsense.ai.monitor import (
    AnomalyEvent,
    Rules,
    Sensitivity,
    ShipmentLimit,
    StreamMonitor,
    Thresholds,
)
from chainsense.errors import ChainSenseError
from chainsense.observability.metrics import metrics
from chainsense.store import Alarm, AlarmChange, NewAnomaly, Store, StoredAnomaly, StoredReading
from chainsense.telemetry.schemas import SchemaRegistry, UnknownSchemaError

__all__ = ["AIConfig", "AIService"]

log = logging.getLogger(__name__)

SENSITIVITY = "sensitivity"
"""The model kind under which a device's own false-alarm rate is saved (metric ``*``)."""
SHIPMENT = "shipment"
"""The model kind under which a logger's shipment range is saved (metric ``shipment:<id>``)."""
MACHINE = "chainsense.machine.v1"
METER = "chainsense.meter.v1"


@dataclass(frozen=True)
class AIConfig:
    thresholds: Thresholds = field(default_factory=Thresholds)
    sensitivity: Sensitivity = field(default_factory=Sensitivity)
    rules: Rules = field(default_factory=Rules)
    chunk: int = 2000
    poll_interval: float = 1.0
    limits: Mapping[str, float] = field(
        default_factory=lambda: {"vibration_rms": 7.1, "temperature": 90.0, "current": 30.0}
    )
    forecast_interval_ms: int = 900_000
    subscriber_queue: int = 1000


class AIService:
    """One per platform. ``start`` / ``stop``; ``notify`` is the ingest callback."""

    worker = "ai"

    def __init__(
        self,
        *,
        store: Store,
        schemas: SchemaRegistry,
        config: AIConfig,
        publish: Callable[[StoredAnomaly], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.schemas = schemas
        self.config = config
        self.monitor = StreamMonitor(
            schemas, config.thresholds, sensitivity=config.sensitivity, rules=config.rules
        )
        self.trends: dict[tuple[str, str], DegradationTrend] = {}
        self.profiles: dict[tuple[str, str], SeasonalProfile] = {}
        self._dirty_models: set[tuple[str, str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Queue[StoredAnomaly | Alarm]] = set()
        self._publish = publish
        self.cursor = 0
        self.newest = 0
        self.processed = 0
        self.events = 0
        self.dropped = 0
        self._rate = 0.0
        self.last_error: str | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.cursor = await self.store.anomalies.cursor(self.worker)
        for (device, metric, model), state in (await self.store.anomalies.states()).items():
            key = (device, metric)
            if model == "detector":
                self.monitor.load(key, state)
            elif model == "trend":
                self.trends[key] = DegradationTrend.from_state(state)
            elif model == "profile":
                self.profiles[key] = SeasonalProfile.from_state(state)
            elif model == SHIPMENT:
                self.monitor.watch_shipment([device], ShipmentLimit.from_state(state))
            elif model == SENSITIVITY:
                self.monitor.set_device_per_week(device, state.get("false_alarms_per_week"))
        self._task = asyncio.create_task(self._run(), name="ai-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def notify(self, newest_id: int | None = None) -> None:
        """Called by ingestion after a durable commit: never blocks, never raises."""
        if newest_id is not None and newest_id > self.newest:
            self.newest = newest_id
        self._wake.set()

    # --- live subscribers ------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[StoredAnomaly | Alarm]:
        """A queue of live anomaly events and alarm changes."""
        queue: asyncio.Queue[StoredAnomaly | Alarm] = asyncio.Queue(self.config.subscriber_queue)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[StoredAnomaly | Alarm]) -> None:
        self._subscribers.discard(queue)

    # --- figures and models ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        newest = max(self.newest, self.cursor)
        return {
            "cursor": self.cursor,
            "newest_reading_id": newest,
            "lag_readings": newest - self.cursor,
            "processed": self.processed,
            "events": self.events,
            "points_per_second": round(self._rate, 1),
            "streams": len(self.monitor.streams),
            "subscribers": len(self._subscribers),
            "dropped_live_events": self.dropped,
            "running": self._task is not None and not self._task.done(),
            "last_error": self.last_error,
        }

    def health(self, device: str, now_ms: int) -> dict[str, RemainingLife | None]:
        return {
            metric: trend.remaining_life(limit=self.config.limits.get(metric, 0.0), now_ms=now_ms)
            for (d, metric), trend in list(self.trends.items())
            if d == device and metric in self.config.limits
        }

    def forecast(self, device: str, start_ms: int, intervals: int) -> dict[str, list[Any]]:
        return {
            metric: profile.forecast(start_ms, intervals)
            for (d, metric), profile in list(self.profiles.items())
            if d == device
        }

    # --- sensitivity per device ---------------------------------------------------------------

    def sensitivity(self, device: str) -> tuple[float | None, float]:
        """(the device's own false alarms a week or None, the settings' default rate)."""
        return (
            self.monitor.device_per_week.get(device.lower()),
            self.monitor.sensitivity.default,
        )

    async def set_sensitivity(self, device: str, per_week: float | None) -> None:
        """Save a device's own rate (None: back to the settings'), then apply it: it survives a
        restart and applies from the device's next reading."""
        await self.store.anomalies.put_state(
            (device, "*", SENSITIVITY), {"false_alarms_per_week": per_week}
        )
        self.monitor.set_device_per_week(device, per_week)

    async def watch_shipment(self, loggers: Sequence[str], limit: ShipmentLimit) -> None:
        """Save, then apply, a shipment's range as a hard limit on its loggers' readings during
        its window (it survives a restart)."""
        for logger in loggers:
            await self.store.anomalies.put_state(
                (logger, f"shipment:{limit.shipment}", SHIPMENT), limit.to_state()
            )
        self.monitor.watch_shipment(list(loggers), limit)

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                rows = await self.store.readings.query(
                    after_id=self.cursor, limit=self.config.chunk
                )
            except ChainSenseError as exc:
                self.last_error = str(exc)
                log.warning("AI worker cannot read: %s", exc)
                await asyncio.sleep(self.config.poll_interval)
                continue
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
                continue
            started = time.perf_counter()
            events, states, alarms = await asyncio.to_thread(self._process, rows)
            try:
                stored = await self.store.anomalies.checkpoint(
                    worker=self.worker,
                    cursor=rows[-1].id,
                    events=events,
                    states=states,
                    alarms=alarms,
                )
            except ChainSenseError as exc:
                self.last_error = str(exc)
                log.warning("AI worker cannot save: %s", exc)
                await asyncio.sleep(self.config.poll_interval)
                continue
            self.cursor = rows[-1].id
            self.newest = max(self.newest, self.cursor)
            self.processed += len(rows)
            self.events += len(stored)
            if stored:
                metrics().anomalies_raised.inc(len(stored))
                log.info("anomalies raised: %d (reading ids up to %d)", len(stored), self.cursor)
            elapsed = time.perf_counter() - started
            points = sum(len(r.values) for r in rows)
            self._rate = points / elapsed if elapsed > 0 else self._rate
            for event in stored:
                await self._fan_out(event)
            for change in alarms:
                if change.stored is not None:
                    await self._fan_out(change.stored)

    async def publish_alarm(self, alarm: Alarm) -> None:
        """Send an alarm change made elsewhere (an operator's ack or clear) to live subscribers."""
        await self._fan_out(alarm)

    async def _fan_out(self, event: StoredAnomaly | Alarm) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1  # a slow dashboard loses live events, never the stored ones
        if self._publish is not None and isinstance(event, StoredAnomaly):
            await self._publish(event)

    def _process(
        self, rows: Sequence[StoredReading]
    ) -> tuple[list[NewAnomaly], dict[tuple[str, str, str], dict[str, Any]], list[AlarmChange]]:
        events: list[AnomalyEvent] = []
        for row in rows:
            events.extend(
                self.monitor.observe(
                    reading_id=row.id,
                    device=row.device,
                    schema=row.schema,
                    timestamp=row.timestamp,
                    values=row.values,
                )
            )
            self._track(row)
        states: dict[tuple[str, str, str], dict[str, Any]] = {
            (d, m, "detector"): s for (d, m), s in self.monitor.take_dirty().items()
        }
        for d, m, model in self._dirty_models:
            source = self.trends if model == "trend" else self.profiles
            states[(d, m, model)] = source[(d, m)].to_state()
        self._dirty_models.clear()
        return [_new(e) for e in events], states, self.monitor.take_alarms()

    def _track(self, row: StoredReading) -> None:
        try:
            schema = self.schemas.by_id(row.schema)
        except UnknownSchemaError:
            return
        if schema.name not in (MACHINE, METER):
            return
        for metric, raw in zip(schema.metrics, row.values, strict=False):
            key = (row.device, metric.name)
            x = raw / 10**metric.scale
            if schema.name == MACHINE:
                trend = self.trends.get(key)
                if trend is None:
                    trend = self.trends[key] = DegradationTrend()
                trend.learn_one(x, row.timestamp)
                self._dirty_models.add((*key, "trend"))
            else:
                profile = self.profiles.get(key)
                if profile is None:
                    profile = self.profiles[key] = SeasonalProfile(
                        interval_ms=self.config.forecast_interval_ms
                    )
                profile.learn_one(x, row.timestamp)
                self._dirty_models.add((*key, "profile"))


def _new(e: AnomalyEvent) -> NewAnomaly:
    return NewAnomaly(
        reading_id=e.reading_id,
        device=e.device,
        schema=e.schema,
        metric=e.metric,
        timestamp=e.timestamp,
        value=e.value,
        score=e.score,
        expected=e.expected,
        low=e.low,
        high=e.high,
        check=e.check,
        detector=e.detector,
    )
