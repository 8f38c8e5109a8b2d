"""The AI worker's models and the CPU work on them, apart from the worker's loop and store I/O.

:class:`AIEngine` owns every model (the :class:`~chainsense.ai.monitor.StreamMonitor`, the
machines' :class:`~chainsense.ai.maintenance.DegradationTrend` and the meters'
:class:`~chainsense.ai.forecast.SeasonalProfile`) and turns a chunk of stored readings into new
events, changed model states and alarm changes (:meth:`AIEngine.process`). The worker
(:class:`~chainsense.ai.service.AIService`) runs it either in a thread of the serving process or,
by default, in a process of its own (:class:`EngineProcess`), so that the models' Python, ~100-200
us a reading, does not hold the serving process's GIL while it verifies and stores readings.

Both ways run the same code on the same inputs, so they give the same events and states
(tests/ai/test_engine_process.py compares them). The process keeps nothing the store does not:
the worker checkpoints the events, states and cursor after each chunk, and a child that dies is
started again from the last checkpoint (its chunk in flight is read and scored again).

The one thing the store adds after a chunk is each new alarm's id (``AlarmChange.alarm_id``,
filled in by the checkpoint): in a thread the monitor's own alarm objects get it; a process gets
the ids with its next chunk (:meth:`AIEngine.process`'s ``alarm_ids``), so its next update of an
alarm updates that alarm instead of opening another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, Protocol

from chainsense.ai.forecast import SeasonalProfile
from chainsense.ai.maintenance import DegradationTrend
from chainsense.ai.monitor import (
    AnomalyEvent,
    Rules,
    Sensitivity,
    ShipmentLimit,
    StreamMonitor,
    Thresholds,
)
from chainsense.store import AlarmChange, NewAnomaly
from chainsense.telemetry.schemas import SchemaRegistry, UnknownSchemaError

__all__ = ["AIConfig", "AIEngine", "ChunkResult", "EngineProcess", "Row"]

SENSITIVITY = "sensitivity"
"""The model kind under which a device's own false-alarm rate is saved (metric ``*``)."""
SHIPMENT = "shipment"
"""The model kind under which a logger's shipment range is saved (metric ``shipment:<id>``)."""
RECOMMISSION = "recommission"
"""The model kind under which a device's latest re-commissioning is saved (metric ``*``)."""
RECOMMISSION_APPLIED = "recommission-applied"
"""The model kind under which the AI worker records the latest re-commissioning it applied
(metric ``*``): one without it may have been undone by a worker that died before applying it."""
FORGOTTEN = ("detector", "trend")
"""The model kinds a re-commissioning drops (a meter's demand profile is kept)."""
MACHINE = "chainsense.machine.v1"
METER = "chainsense.meter.v1"

ModelKey = tuple[str, str, str]
ChunkResult = tuple[list[NewAnomaly], dict[ModelKey, dict[str, Any] | str], list[AlarmChange]]
"""What a chunk gives: new events, changed model states (a process sends them JSON-encoded, as
the store saves them), alarm changes (to checkpoint)."""


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
    process: bool = True
    """Run the models in a process of their own (False: in a thread of the serving process)."""


class Row(NamedTuple):
    """The fields of a stored reading the models read (all a process is sent)."""

    id: int
    device: str
    schema: bytes
    timestamp: int
    values: tuple[int, ...]


class _Reading(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def schema(self) -> bytes: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def values(self) -> tuple[int, ...]: ...


class AIEngine:
    """Every model of the AI worker. Not thread-safe: one worker owns it."""

    def __init__(self, schemas: SchemaRegistry, config: AIConfig) -> None:
        self.schemas = schemas
        self.config = config
        self.monitor = StreamMonitor(
            schemas, config.thresholds, sensitivity=config.sensitivity, rules=config.rules
        )
        self.trends: dict[tuple[str, str], DegradationTrend] = {}
        self.profiles: dict[tuple[str, str], SeasonalProfile] = {}
        self._dirty_models: set[tuple[str, str, str]] = set()
        self._sent_alarms: list[AlarmChange] = []

    def load(self, states: Mapping[ModelKey, dict[str, Any]]) -> None:
        """Take up the saved states (``store.anomalies.states()``)."""
        for (device, metric, model), state in states.items():
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

    def set_device_per_week(self, device: str, per_week: float | None) -> None:
        self.monitor.set_device_per_week(device, per_week)

    def watch_shipment(self, loggers: list[str], limit: ShipmentLimit) -> None:
        self.monitor.watch_shipment(loggers, limit)

    def forget(self, device: str) -> None:
        """Re-commissioned: ``device``'s detectors and degradation trends start afresh."""
        self.monitor.forget(device)
        for key in [k for k in self.trends if k[0].lower() == device.lower()]:
            del self.trends[key]
        self._dirty_models = {
            k
            for k in self._dirty_models
            if not (k[0].lower() == device.lower() and k[2] == "trend")
        }

    def streams(self) -> int:
        return len(self.monitor.streams)

    def process(
        self, rows: Sequence[_Reading], alarm_ids: Sequence[int | None] | None = None
    ) -> ChunkResult:
        """Score and learn a chunk of readings. ``alarm_ids``: the ids the checkpoint gave the
        alarm changes of the previous call, in their order (a process's copies do not get
        them)."""
        if alarm_ids is not None:
            for change, alarm_id in zip(self._sent_alarms, alarm_ids, strict=True):
                change.alarm_id = alarm_id
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
        states: dict[ModelKey, dict[str, Any] | str] = {
            (d, m, "detector"): s for (d, m), s in self.monitor.take_dirty().items()
        }
        for d, m, model in self._dirty_models:
            source = self.trends if model == "trend" else self.profiles
            states[(d, m, model)] = source[(d, m)].to_state()
        self._dirty_models.clear()
        self._sent_alarms = self.monitor.take_alarms()
        return [_new(e) for e in events], states, self._sent_alarms

    def _track(self, row: _Reading) -> None:
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


# --- the engine in a process of its own ------------------------------------------------------

_engine: AIEngine | None = None


def _child_init(schemas: SchemaRegistry, config: AIConfig, parent: int) -> None:
    global _engine
    _engine = AIEngine(schemas, config)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent").start()


def _exit_with(parent: int) -> None:
    """End this process when the one that started it is gone (a SIGKILLed server leaves no
    orphan behind, whatever the state of the pipe)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _child_call(method: str, *args: Any) -> Any:
    assert _engine is not None
    return getattr(_engine, method)(*args)


def _child_process(rows: list[Row], alarm_ids: list[int | None] | None) -> tuple[ChunkResult, int]:
    """A chunk in the child. The states go back JSON-encoded: the parent saves them as they
    are, instead of unpickling ~2 kB of nested dicts per stream (one C call holding its GIL)
    and encoding them again."""
    assert _engine is not None
    events, states, alarms = _engine.process(rows, alarm_ids)
    encoded: dict[ModelKey, dict[str, Any] | str] = {
        key: json.dumps(state, separators=(",", ":")) for key, state in states.items()
    }
    return (events, encoded, alarms), _engine.streams()


def _child_main(conn: Connection, schemas: SchemaRegistry, config: AIConfig, parent: int) -> None:
    """The child: answer each request of the pipe in order until ``stop`` or the pipe's end.
    Ctrl-C in a terminal reaches the whole process group: the parent decides when this ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _child_init(schemas, config, parent)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request[0] == "stop":
            return
        try:
            if request[0] == "process":
                answer: tuple[str, Any] = ("ok", _child_process(*request[1:]))
            else:
                answer = ("ok", _child_call(request[1], *request[2]))
        except Exception as exc:
            answer = ("error", exc)
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError):
            conn.send(("error", RuntimeError(repr(answer[1]))))
        except OSError:
            return


class EngineProcess:
    """An :class:`AIEngine` in one child process (started with ``spawn``: a fresh interpreter,
    nothing of the server's threads or sockets), asked over a pipe. Requests go out one at a
    time from one thread of the parent, in the order they were made; a dead child fails them
    with ``BrokenProcessPool``.

    A pipe and a process of our own rather than a ``ProcessPoolExecutor``: when a pool's worker
    is killed, the pool's manager and queue-feeder threads have to wind down around it, and one
    run of the kill tests hung there on a loaded machine. Here a dead child is a closed pipe:
    the blocked ``send`` or ``recv`` fails at once, and nothing else waits on it."""

    def __init__(self, schemas: SchemaRegistry, config: AIConfig) -> None:
        self._conn, child_end = multiprocessing.Pipe(duplex=True)
        self._process = multiprocessing.get_context("spawn").Process(
            target=_child_main,
            args=(child_end, schemas, config, os.getpid()),
            name="chainsense-ai-engine",
            daemon=True,
        )
        self._child_end: Connection | None = child_end
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ai-engine")
        self.pid: int | None = None

    async def start(self, states: Mapping[ModelKey, dict[str, Any]]) -> None:
        """Start the child and load the saved states into it."""
        await asyncio.wrap_future(self._thread.submit(self._start))
        await self.call("load", dict(states))

    def _start(self) -> None:
        self._process.start()
        self.pid = self._process.pid
        if self._child_end is not None:  # the child's end, closed here: its death is our EOF
            self._child_end.close()
            self._child_end = None

    def _ask(self, request: tuple[Any, ...]) -> Any:
        """One request and its answer (in the parent's one thread for the child)."""
        try:
            self._conn.send(request)
            kind, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise BrokenProcessPool(
                f"the AI engine process {self.pid} is gone ({type(exc).__name__}: {exc})"
            ) from exc
        if kind == "error":
            raise value
        return value

    async def call(self, method: str, *args: Any) -> Any:
        return await asyncio.wrap_future(self._thread.submit(self._ask, ("call", method, args)))

    async def process(
        self, rows: list[Row], alarm_ids: list[int | None] | None
    ) -> tuple[ChunkResult, int]:
        """:meth:`AIEngine.process` in the child, and its number of streams."""
        answer: tuple[ChunkResult, int] = await asyncio.wrap_future(
            self._thread.submit(self._ask, ("process", rows, alarm_ids))
        )
        return answer

    def send(self, method: str, *args: Any) -> None:
        """Call without waiting: it runs before any later call. A dead child drops it (its
        successor loads what the store has)."""

        def ask_quietly() -> None:
            with contextlib.suppress(Exception):
                self._ask(("call", method, args))

        with contextlib.suppress(RuntimeError):  # shut down
            self._thread.submit(ask_quietly)

    def stop(self) -> None:
        """End the child: it finishes the request it runs (a chunk at most); requests not sent
        yet are dropped. Never waits on a child that does not end: 5 s, then it is killed."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._process.pid is not None:
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        self._conn.close()
        if self._child_end is not None:
            self._child_end.close()
