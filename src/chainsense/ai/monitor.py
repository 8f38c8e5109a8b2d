"""One detector per (device, metric) stream, turning readings into anomaly events.

>>> from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
>>> cold = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
>>> monitor = StreamMonitor(BUILTIN_SCHEMAS, Thresholds())
>>> t0 = 1_767_225_600_000
>>> for i in range(60):
...     _ = monitor.observe(reading_id=i + 1, device="0xA", schema=cold.id,
...                         timestamp=t0 + i * 1000, values=(415 + i % 3, 620 + i % 2))
>>> [e.explanation for e in monitor.observe(reading_id=61, device="0xA", schema=cold.id,
...                                         timestamp=t0 + 60_000, values=(1250, 621))]
['temperature = 12.5 Cel, expected 4.113 to 4.21 Cel (level)']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chainsense.ai.base import AnomalyFilter, EventGate, restore
from chainsense.ai.guard import SensorGuard
from chainsense.telemetry.schemas import Schema, SchemaRegistry, UnknownSchemaError

__all__ = ["AnomalyEvent", "StreamKey", "StreamMonitor", "Thresholds"]

StreamKey = tuple[str, str]
"""(device address, metric name): one stream."""


@dataclass(frozen=True)
class Thresholds:
    """Sensitivity: the score at which a point is anomalous. A device's own threshold wins over
    its schema's, which wins over ``default``; lower is more sensitive.

    >>> sensitivity = Thresholds(2.0, {"chainsense.meter.v1": 3.0, "0xab": 0.5})
    >>> sensitivity.get("0xAB", "chainsense.meter.v1"), sensitivity.get("0xCD", "x.v1")
    (0.5, 2.0)
    """

    default: float = 1.0
    overrides: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", {k.lower(): v for k, v in self.overrides.items()})

    def get(self, device: str, schema_name: str) -> float:
        o = self.overrides
        return o.get(device.lower()) or o.get(schema_name.lower()) or self.default


@dataclass(frozen=True)
class AnomalyEvent:
    """An anomaly as stored and shown: which reading, which metric, how far from what."""

    reading_id: int
    device: str
    schema: bytes
    schema_name: str
    metric: str
    unit: str
    timestamp: int
    value: float
    score: float
    expected: float
    low: float
    high: float
    check: str
    detector: str

    @property
    def explanation(self) -> str:
        return (
            f"{self.metric} = {self.value:g} {self.unit}, expected {self.low:.4g} to "
            f"{self.high:.4g} {self.unit} ({self.check})"
        )


class _Stream:
    __slots__ = ("gate", "guarded", "scale")

    def __init__(self, guarded: AnomalyFilter, gate: EventGate, scale: int) -> None:
        self.guarded = guarded
        self.gate = gate
        self.scale = scale


class StreamMonitor:
    """Every stream's filtered detector and event gate. Not thread-safe: one worker owns it."""

    def __init__(
        self,
        schemas: SchemaRegistry,
        thresholds: Thresholds,
        *,
        factory: Callable[[], Any] = SensorGuard,
        cooldown: int = 12,
        patience: int = 60,
    ) -> None:
        self.schemas = schemas
        self.thresholds = thresholds
        self.factory = factory
        self.cooldown = cooldown
        self.patience = patience
        self.streams: dict[StreamKey, _Stream] = {}
        self.dirty: set[StreamKey] = set()

    def _new(self, threshold: float, scale: int) -> _Stream:
        return _Stream(
            AnomalyFilter(self.factory(), threshold=threshold, patience=self.patience),
            EventGate(threshold=threshold, cooldown=self.cooldown),
            scale,
        )

    def observe(
        self,
        *,
        reading_id: int,
        device: str,
        schema: bytes,
        timestamp: int,
        values: tuple[int, ...],
    ) -> list[AnomalyEvent]:
        """Score and learn one reading; the events it opens (one per anomalous metric)."""
        try:
            spec: Schema = self.schemas.by_id(schema)
        except UnknownSchemaError:
            return []
        threshold = self.thresholds.get(device, spec.name)
        events: list[AnomalyEvent] = []
        streams = self.streams
        for metric, raw in zip(spec.metrics, values, strict=False):
            key = (device, metric.name)
            stream = streams.get(key)
            if stream is None:
                stream = streams[key] = self._new(threshold, metric.scale)
            x = raw / 10**metric.scale
            guarded = stream.guarded
            guarded.threshold = stream.gate.threshold = threshold
            score = guarded.detector.score_one(x, timestamp)
            if stream.gate.update(score):
                expected = guarded.expected(x, timestamp)
                events.append(
                    AnomalyEvent(
                        reading_id=reading_id,
                        device=device,
                        schema=schema,
                        schema_name=spec.name,
                        metric=metric.name,
                        unit=metric.unit,
                        timestamp=timestamp,
                        value=x,
                        score=score,
                        expected=expected.value,
                        low=expected.low,
                        high=expected.high,
                        check=expected.check,
                        detector=guarded.detector.kind,
                    )
                )
            guarded.learn_one(x, timestamp, score)
            self.dirty.add(key)
        return events

    def state(self, key: StreamKey) -> dict[str, Any]:
        stream = self.streams[key]
        return {
            "filter": stream.guarded.to_state(),
            "gate": stream.gate.to_state(),
            "scale": stream.scale,
        }

    def load(self, key: StreamKey, state: dict[str, Any]) -> None:
        guarded = restore(state["filter"])
        gate = EventGate(threshold=guarded.threshold, cooldown=self.cooldown)
        gate.load(state["gate"])
        self.streams[key] = _Stream(guarded, gate, int(state["scale"]))

    def take_dirty(self) -> dict[StreamKey, dict[str, Any]]:
        """The states of the streams changed since the last call (to persist them)."""
        dirty, self.dirty = self.dirty, set()
        return {key: self.state(key) for key in dirty}
