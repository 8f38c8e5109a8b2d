"""The AI worker: runs beside ingestion and never holds an acknowledgement up.

Design: ingestion acknowledges after its commit and only *notifies* this worker (``notify`` sets
an event; nothing waits). The worker tails the readings table by id from a persisted cursor, so
the readings table itself is its queue: nothing is lost when it falls behind or restarts, and the
backlog is a figure (newest id - cursor, see :meth:`AIService.status`) instead of a buffer that
fills. Each chunk is scored in a worker thread (the event loop keeps answering), then its new
events, the changed model states and the cursor are committed together, and the stored events
are published to live subscribers (``/v1/stream``) and the webhook.

The models and the scoring live in :mod:`chainsense.ai.engine`: by default in a process of their
own (``AIConfig.process``), so that they do not hold the serving process's GIL; this module keeps
the loop, the store I/O, the checkpoints and the fan-out, and cheap copies of what the API reads
synchronously (the settings, the machines' trends and the meters' profiles).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chainsense.ai.engine import (
    FORGOTTEN,
    RECOMMISSION,
    RECOMMISSION_APPLIED,
    SENSITIVITY,
    SHIPMENT,
    AIConfig,
    AIEngine,
    ChunkResult,
    EngineProcess,
    Row,
)
from chainsense.ai.forecast import SeasonalProfile
from chainsense.ai.livebus import LiveBus, LocalBus
from chainsense.ai.maintenance import DegradationTrend, RemainingLife
from chainsense.ai.monitor import ShipmentLimit
from chainsense.errors import ChainSenseError
from chainsense.observability.metrics import metrics
from chainsense.store import Alarm, Store, StoredAnomaly, StoredReading
from chainsense.telemetry.schemas import SchemaRegistry

if TYPE_CHECKING:
    from chainsense.store.leader import Leadership

#: How often the worker looks for settings saved by other processes (``follow_settings``), and
#: how far back each look reaches before the newest one it saw.
_SETTINGS_EVERY_S = 0.5
_SETTINGS_OVERLAP = timedelta(seconds=5)

__all__ = ["AIConfig", "AIService"]

log = logging.getLogger(__name__)


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
        # In a thread: the models themselves. With a process: the copies the API reads (the
        # settings, trends and profiles; no detector), updated after each checkpoint.
        self.engine = AIEngine(schemas, config)
        self.monitor = self.engine.monitor
        self.trends = self.engine.trends
        self.profiles = self.engine.profiles
        self._child: EngineProcess | None = None
        self._alarm_ids: list[int | None] | None = None
        self._streams = 0
        self.restarts = 0
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
        self.follow_settings = False
        """Take up the devices' sensitivities and shipments' ranges other processes save (set
        under ``serve --workers``, where the API request may reach a process that does not run
        the worker): the worker reads the ones written since its last look before each chunk,
        at most every ``_SETTINGS_EVERY_S``."""
        self._settings_since: datetime | None = None
        self._settings_at = 0.0
        self._forget: dict[str, int] = {}
        """Devices re-commissioned (by any process) whose copies the worker has still to drop,
        with the request's time (ms)."""
        self._recommissioned: dict[str, int] = {}
        """The last re-commissioning the worker applied, per device (applied once)."""
        self.bus: LiveBus = LocalBus(self.deliver)
        """How live events reach the subscribers of every process (ai/livebus.py): directly in
        one process; through PostgreSQL NOTIFY under ``serve --workers``."""

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._settings_since = datetime.now(UTC) - _SETTINGS_OVERLAP  # load() takes up the rest
        self.cursor = await self.store.anomalies.cursor(self.worker)
        states = await self._finish_recommissionings(await self._saved_states())
        if self.config.process:
            self.engine.load({k: s for k, s in states.items() if k[2] != "detector"})
            await self._start_child(states)
        else:
            self.engine.load(states)
        self._task = asyncio.create_task(self._run(), name="ai-worker")

    async def _saved_states(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The saved model states, each open alarm with its id. A detector's state is encoded
        before the checkpoint that opens its alarm gives the alarm an id, so the state saved
        with that checkpoint has none; taken up as it is, the stream's next anomalous reading
        would open a second alarm. The id is the device's active alarm of that schema opened
        by the same reading."""
        states = await self.store.anomalies.states()
        for (device, _, model), state in states.items():
            alarm = state.get("alarm") if model == "detector" else None
            if not alarm or alarm.get("alarm_id") is not None:
                continue
            for active in await self.store.alarms.query(state="active", device=device):
                if active.schema.hex() == alarm["schema"] and (
                    active.first_seen_ms == alarm["first_seen_ms"]
                ):
                    alarm["alarm_id"] = active.id
        return states

    async def _finish_recommissionings(
        self, states: dict[tuple[str, str, str], dict[str, Any]]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The saved states without those of a re-commissioning no worker recorded as applied.
        The request deletes the device's states, but the worker running then may save them
        again with a checkpoint in flight; it deletes them once more before its next chunk. A
        worker killed in between left them saved: they are dropped here, before any model
        takes them up."""
        applied = {
            device: state.get("at_ms")
            for (device, _, model), state in states.items()
            if model == RECOMMISSION_APPLIED
        }
        for (device, _, model), state in list(states.items()):
            if model != RECOMMISSION:
                continue
            at_ms = int(state.get("at_ms", 0))
            if applied.get(device) != at_ms:
                states = {k: s for k, s in states.items() if not _forgotten(k, device)}
                await self._applied(device, at_ms)
                log.info("AI: %s re-commissioned while no worker applied it; applied now", device)
            self._recommissioned[device] = at_ms
        return states

    async def _applied(self, device: str, at_ms: int) -> None:
        """Delete ``device``'s learnt states and record the re-commissioning as applied."""
        await self.store.anomalies.delete_states(device, FORGOTTEN)
        await self.store.anomalies.put_state((device, "*", RECOMMISSION_APPLIED), {"at_ms": at_ms})

    async def _start_child(self, states: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        child = EngineProcess(self.schemas, self.config)
        try:
            await child.start(states)
            streams = await child.call("streams")
        except BaseException:
            await asyncio.to_thread(child.stop)
            raise
        self._child, self._alarm_ids, self._streams = child, None, streams
        log.info("AI engine process %s started", child.pid)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._child is not None:
            child, self._child = self._child, None
            await asyncio.to_thread(child.stop)

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

    @property
    def running_here(self) -> bool:
        """Whether this process runs the worker (with ``serve --workers``, only the AI role's
        leader does)."""
        return self._task is not None

    async def shared_status(self, leader: Leadership | None) -> dict[str, Any]:
        """:meth:`status`, and where the worker runs in another process (``leader`` holds the
        role there), its progress as the database records it: the cursor it last saved and the
        newest stored reading. A follower's own figures were a worker that never started
        (cursor 0, every reading "not analysed"). ``processed``, ``events``, rates and
        ``streams`` stay this process's; ``worker_here`` says which."""
        status = self.status()
        status["worker_here"] = self.running_here
        if self.running_here or leader is None:
            return status
        cursor = await self.store.anomalies.cursor(self.worker)
        newest = max(cursor, await self.store.anomalies.newest_reading_id())
        status.update(
            cursor=cursor,
            newest_reading_id=newest,
            lag_readings=newest - cursor,
            running=await leader.holder() is not None,
        )
        return status

    def status(self) -> dict[str, Any]:
        newest = max(self.newest, self.cursor)
        return {
            "cursor": self.cursor,
            "newest_reading_id": newest,
            "lag_readings": newest - self.cursor,
            "processed": self.processed,
            "events": self.events,
            "points_per_second": round(self._rate, 1),
            "streams": self._streams if self.config.process else len(self.monitor.streams),
            "subscribers": len(self._subscribers),
            "dropped_live_events": self.dropped,
            "running": self._task is not None and not self._task.done(),
            "last_error": self.last_error,
            "engine": "process" if self.config.process else "thread",
            "engine_pid": self._child.pid if self._child is not None else None,
            "engine_restarts": self.restarts,
        }

    async def health(self, device: str, now_ms: int) -> dict[str, RemainingLife | None]:
        trends = await self._models(device, "trend")
        return {
            metric: trend.remaining_life(limit=self.config.limits.get(metric, 0.0), now_ms=now_ms)
            for metric, trend in trends.items()
            if metric in self.config.limits
        }

    async def forecast(self, device: str, start_ms: int, intervals: int) -> dict[str, list[Any]]:
        profiles = await self._models(device, "profile")
        return {metric: p.forecast(start_ms, intervals) for metric, p in profiles.items()}

    async def _models(self, device: str, model: str) -> dict[str, Any]:
        """A device's trends or profiles by metric: this process's copies where it runs the
        worker, else (``serve --workers``: another worker does) as the worker last saved them."""
        if self.running_here or not self.follow_settings:
            mine = self.trends if model == "trend" else self.profiles
            return {metric: m for (d, metric), m in list(mine.items()) if d == device}
        kind: Any = DegradationTrend if model == "trend" else SeasonalProfile
        saved = await self.store.anomalies.states(device=device, model=model)
        return {metric: kind.from_state(state) for (_, metric, _), state in saved.items()}

    # --- sensitivity per device ---------------------------------------------------------------

    async def sensitivity(self, device: str) -> tuple[float | None, float]:
        """(the device's own false alarms a week or None, the settings' default rate). Under
        ``serve --workers`` (``follow_settings``) from the database, where any process saves
        it, not from this process's copy."""
        own = self.monitor.device_per_week.get(device.lower())
        if self.follow_settings:
            saved = await self.store.anomalies.states(device=device, model=SENSITIVITY)
            own = next((s.get("false_alarms_per_week") for s in saved.values()), None)
        return own, self.monitor.sensitivity.default

    async def set_sensitivity(self, device: str, per_week: float | None) -> None:
        """Save a device's own rate (None: back to the settings'), then apply it: it survives a
        restart and applies from the device's next reading."""
        await self.store.anomalies.put_state(
            (device, "*", SENSITIVITY), {"false_alarms_per_week": per_week}
        )
        self.monitor.set_device_per_week(device, per_week)
        if self._child is not None:
            self._child.send("set_device_per_week", device, per_week)

    async def watch_shipment(self, loggers: Sequence[str], limit: ShipmentLimit) -> None:
        """Save, then apply, a shipment's range as a hard limit on its loggers' readings during
        its window (it survives a restart)."""
        for logger in loggers:
            await self.store.anomalies.put_state(
                (logger, f"shipment:{limit.shipment}", SHIPMENT), limit.to_state()
            )
        self.monitor.watch_shipment(list(loggers), limit)
        if self._child is not None:
            self._child.send("watch_shipment", list(loggers), limit)

    async def recommission(self, device: str, *, now_ms: int) -> list[Alarm]:
        """The device was serviced or replaced: forget what its detectors and degradation trends
        learnt, so its next readings start a learning period (a machine's next 400 fit a new
        commissioning baseline), and clear its open alarms. Saved at once (a worker that
        restarts finds the device fresh); the running AI worker, here or in another process,
        forgets its copies before its next chunk. Returns the alarms cleared."""
        await self.store.anomalies.put_state((device, "*", RECOMMISSION), {"at_ms": now_ms})
        await self.store.anomalies.delete_states(device, FORGOTTEN)
        cleared = []
        for alarm in await self.store.alarms.query(state="active", device=device, limit=10_000):
            done = await self.store.alarms.clear(alarm.id, now_ms=now_ms)
            if done is not None:
                cleared.append(done)
        if cleared:
            await self._broadcast([], cleared)
        self._forget[device] = now_ms
        return cleared

    async def _forget_recommissioned(self) -> None:
        """Between chunks (nothing in flight): drop the re-commissioned devices' copies, here
        and in the engine's process, then their saved states again (a checkpoint may have
        written them back since the request)."""
        for device, at_ms in list(self._forget.items()):
            if self._recommissioned.get(device) == at_ms:
                del self._forget[device]
                continue
            self.engine.forget(device)
            if self._child is not None:
                self._child.send("forget", device)
            await self._applied(device, at_ms)
            self._recommissioned[device] = at_ms
            del self._forget[device]
            log.info("AI: %s re-commissioned; its detectors start a learning period", device)

    # --- the loop -----------------------------------------------------------------------------

    async def _take_up_settings(self) -> None:
        """Apply the sensitivities and shipment ranges saved since the last look (by any
        process). Re-reads a few seconds back (a write that committed late is not missed) and
        applies idempotently."""
        now = time.monotonic()
        if self._settings_since is None or now - self._settings_at < _SETTINGS_EVERY_S:
            return
        self._settings_at = now
        changed = await self.store.anomalies.changed_states(
            (SENSITIVITY, SHIPMENT, RECOMMISSION), self._settings_since - _SETTINGS_OVERLAP
        )
        for (device, _, model), state, at in changed:
            if model == RECOMMISSION:
                self._forget[device] = int(state.get("at_ms", 0))
            elif model == SENSITIVITY:
                per_week = state.get("false_alarms_per_week")
                self.monitor.set_device_per_week(device, per_week)
                if self._child is not None:
                    self._child.send("set_device_per_week", device, per_week)
            else:
                limit = ShipmentLimit.from_state(state)
                self.monitor.watch_shipment([device], limit)
                if self._child is not None:
                    self._child.send("watch_shipment", [device], limit)
            at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
            self._settings_since = max(self._settings_since, at)

    async def _run(self) -> None:
        while True:
            try:
                if self.follow_settings:
                    await self._take_up_settings()
                if self._forget:
                    await self._forget_recommissioned()
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
            try:
                events, states, alarms = await self._score(rows)
            except BrokenProcessPool as exc:
                await self._restart(exc)
                continue
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
            if self.config.process:
                self._alarm_ids = [change.alarm_id for change in alarms]
                self.engine.load(
                    {k: _decoded(s) for k, s in states.items() if k[2] in ("trend", "profile")}
                )
            self.processed += len(rows)
            self.events += len(stored)
            if stored:
                metrics().anomalies_raised.inc(len(stored))
                log.info("anomalies raised: %d (reading ids up to %d)", len(stored), self.cursor)
            elapsed = time.perf_counter() - started
            points = sum(len(r.values) for r in rows)
            self._rate = points / elapsed if elapsed > 0 else self._rate
            await self._broadcast(stored, [c.stored for c in alarms if c.stored is not None])
            if self._publish is not None:
                for event in stored:
                    await self._publish(event)

    async def publish_alarm(self, alarm: Alarm) -> None:
        """Send an alarm change made elsewhere (an operator's ack or clear) to live subscribers."""
        await self._broadcast([], [alarm])

    async def _broadcast(self, anomalies: Sequence[StoredAnomaly], alarms: Sequence[Alarm]) -> None:
        if not anomalies and not alarms:
            return
        try:
            await self.bus.send(anomalies, alarms)
        except ChainSenseError as exc:  # they are stored: only the live frames are lost
            log.warning("live events not sent: %s", exc)

    async def deliver(self, event: StoredAnomaly | Alarm) -> None:
        """Hand a live event to this process's subscribers (from :attr:`bus`)."""
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1  # a slow dashboard loses live events, never the stored ones

    async def _score(self, rows: Sequence[StoredReading]) -> ChunkResult:
        if self._child is None:
            if self.config.process:  # a child that could not be started again
                raise BrokenProcessPool("no AI engine process")
            return await asyncio.to_thread(self.engine.process, rows)
        sent = [Row(r.id, r.device, r.schema, r.timestamp, r.values) for r in rows]
        ids, self._alarm_ids = self._alarm_ids, None
        result, self._streams = await self._child.process(sent, ids)
        return result

    async def _restart(self, exc: BaseException) -> None:
        """The engine's process died (killed, out of memory): start another from the last
        checkpoint; the chunk it was scoring is read again from the cursor, which had not
        moved."""
        dead, self._child = self._child, None
        self.restarts += 1
        self.last_error = f"AI engine process {dead.pid if dead else '?'} died: {exc!r}"
        log.error("%s; starting another from the checkpoint at reading id %d", self.last_error,
                  self.cursor)  # fmt: skip
        if dead is not None:
            await asyncio.to_thread(dead.stop)
        try:
            self.cursor = await self.store.anomalies.cursor(self.worker)
            await self._start_child(await self._saved_states())
        except (ChainSenseError, BrokenProcessPool, OSError) as again:
            self.last_error = f"AI engine process cannot start: {again!r}"
            log.warning("%s", self.last_error)
            await asyncio.sleep(self.config.poll_interval)


def _decoded(state: dict[str, Any] | str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(state) if isinstance(state, str) else state
    return decoded


def _forgotten(key: tuple[str, str, str], device: str) -> bool:
    """Whether the saved state ``key`` is one a re-commissioning of ``device`` drops."""
    return key[0].lower() == device.lower() and key[2] in FORGOTTEN
