"""One :class:`~chainsense.ai.joint.JointGuard` per (device, schema), turning readings into
anomaly events and alarms.

A device's metrics are judged together; an event opens when the score reaches the threshold
(1.0: the alarm point of the configured false-alarm rate) and the device's alarm stays active,
counting the anomalous readings, until the score stays below half the threshold for
``cooldown`` readings (hysteresis); then the alarm is cleared by the detector. A change point
(a machine's regime starting, changing phase or returning: the commissioning baseline's change
detector) is an event at once: within the open alarm, or opening one when the reading is
already past half the threshold (a change between two normal regimes is no alarm). A value outside
a hard limit (``Rules.limits``: a cold-chain schema's allowed range) raises at once and is kept
out of what the model learns (it is known bad, not a new normal).

>>> from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
>>> cold = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
>>> monitor = StreamMonitor(BUILTIN_SCHEMAS, Thresholds())
>>> t0 = 1_767_225_600_000
>>> for i in range(60):
...     _ = monitor.observe(reading_id=i + 1, device="0xA", schema=cold.id,
...                         timestamp=t0 + i * 1000, values=(415 + i % 3, 620 + i % 2))
>>> [e.explanation for e in monitor.observe(reading_id=61, device="0xA", schema=cold.id,
...                                         timestamp=t0 + 60_000, values=(1250, 621))]
['temperature = 12.5 Cel, outside the hard limit 2 to 8 Cel (limit)']
>>> [(a.check, a.severity, a.metrics) for a in monitor.take_alarms()]
[('limit', 'critical', ['temperature'])]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from chainsense.ai.base import EventGate
from chainsense.ai.joint import JointGuard, JointResult
from chainsense.store.alarms import AlarmChange
from chainsense.telemetry.schemas import Metric, Schema, SchemaRegistry, UnknownSchemaError

__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_COUNTERS",
    "DEFAULT_LIMITS",
    "AnomalyEvent",
    "Rules",
    "Sensitivity",
    "ShipmentLimit",
    "StreamKey",
    "StreamMonitor",
    "Thresholds",
]

log = logging.getLogger(__name__)

StreamKey = tuple[str, str]
"""(device address, schema name): one device's stream of readings of one schema."""

DEFAULT_LIMITS: dict[str, str] = {"chainsense.coldchain.v1:temperature": "2..8"}
"""Hard limits by ``schema:metric``: the cold chain's 2-8 Cel, as the escrow judges a breach."""
DEFAULT_COUNTERS: tuple[str, ...] = ("chainsense.charger.v1:energy_delivered",)
"""Cumulative counters by ``schema:metric``: judged as a rate per second."""
DEFAULT_BASELINE: tuple[str, ...] = ("chainsense.machine.v1",)
"""Schemas whose devices are judged against their commissioning baseline (their first readings
are normal operation): machines, not streams with a daily cycle (meters) or shipments."""


@dataclass(frozen=True)
class Thresholds:
    """The score at which an event opens (1.0: the configured false-alarm rate's alarm point).
    A device's own threshold wins over its schema's, which wins over ``default``.

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


class Sensitivity(Thresholds):
    """Expected false alarms per stream per week (default 1), per schema name or device.

    >>> Sensitivity(1.0, {"chainsense.meter.v1": 0.1}).get("0xA", "chainsense.meter.v1")
    0.1
    """


def _parse_range(text: str) -> tuple[float | None, float | None]:
    low, _, high = text.partition("..")
    return (float(low) if low.strip() else None, float(high) if high.strip() else None)


@dataclass(frozen=True)
class Rules:
    """Hard limits (``"schema:metric": "low..high"``, either end may be empty), counters, and the
    schemas judged against a commissioning baseline."""

    limits: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    counters: tuple[str, ...] = DEFAULT_COUNTERS
    baseline: tuple[str, ...] = DEFAULT_BASELINE

    def limits_of(self, schema: Schema) -> dict[str, tuple[float | None, float | None]]:
        prefix = schema.name + ":"
        return {
            k[len(prefix) :]: _parse_range(v)
            for k, v in self.limits.items()
            if k.startswith(prefix)
        }

    def counters_of(self, schema: Schema) -> list[str]:
        prefix = schema.name + ":"
        return [c[len(prefix) :] for c in self.counters if c.startswith(prefix)]


@dataclass(frozen=True)
class ShipmentLimit:
    """A shipment's allowed range as a hard limit: readings of its loggers in ``schema`` (a
    schema id), timestamped within the window, whose value at ``value_index`` (fixed-point, as
    signed) lies outside ``[min_value, max_value]`` raise a critical alarm at once, as the escrow
    judges a breach."""

    shipment: int
    schema: bytes
    value_index: int
    min_value: int
    max_value: int
    window_start_ms: int
    window_end_ms: int

    def to_state(self) -> dict[str, Any]:
        return asdict(self) | {"schema": self.schema.hex()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ShipmentLimit:
        return cls(**(state | {"schema": bytes.fromhex(state["schema"])}))


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
        if self.check == "limit":
            return (
                f"{self.metric} = {self.value:g} {self.unit}, outside the hard limit "
                f"{self.low:g} to {self.high:g} {self.unit} (limit)"
            )
        return (
            f"{self.metric} = {self.value:g} {self.unit}, expected {self.low:.4g} to "
            f"{self.high:.4g} {self.unit} ({self.check})"
        )


_RANK = {"minor": 0, "major": 1, "critical": 2}


def _severity(result: JointResult) -> str:
    if result.check == "limit":
        return "critical"
    return "major" if result.score >= 3.0 else "minor"


class _Device:
    """A stream's detector, gate and open alarm, and what ``observe`` would otherwise work out
    again at every reading: the device's lower-case address, its schema's metric names and
    fixed-point divisors, and its threshold and rate (each with the settings object it came
    from, worked out again when that object is replaced)."""

    __slots__ = (
        "alarm", "divisors", "gate", "guard", "lower", "names", "rate", "rate_from", "spec",
        "threshold", "threshold_from",
    )  # fmt: skip

    def __init__(self, guard: JointGuard, gate: EventGate, alarm: AlarmChange | None) -> None:
        self.guard = guard
        self.gate = gate
        self.alarm = alarm
        self.spec: Schema | None = None
        self.names: tuple[str, ...] = ()
        self.divisors: tuple[int, ...] = ()
        self.lower = ""
        self.rate_from: Sensitivity | None = None
        self.rate = 1.0
        self.threshold_from: Thresholds | None = None
        self.threshold = 1.0


class StreamMonitor:
    """Every device's detector, event gate and open alarm. Not thread-safe: one worker owns it."""

    def __init__(
        self,
        schemas: SchemaRegistry,
        thresholds: Thresholds,
        *,
        sensitivity: Sensitivity | None = None,
        rules: Rules | None = None,
        cooldown: int = 12,
        clear: float = 0.5,
    ) -> None:
        self.schemas = schemas
        self.thresholds = thresholds
        self.sensitivity = sensitivity or Sensitivity()
        self.rules = rules or Rules()
        self.cooldown = cooldown
        self.clear = clear
        self.streams: dict[StreamKey, _Device] = {}
        self.device_per_week: dict[str, float] = {}
        self.shipments: dict[str, dict[int, ShipmentLimit]] = {}
        """Per device (lower-case): the shipments it logs, by id."""
        """Per-device false alarms a week set through the API; wins over ``sensitivity``."""
        self.dirty: set[StreamKey] = set()
        self._alarms: dict[int, AlarmChange] = {}

    def per_week(self, device: str, schema_name: str) -> float:
        """The expected false alarms a week for a device's stream: the device's own (set through
        the API), else the settings' (device, then schema, then default)."""
        own = self.device_per_week.get(device.lower())
        return own if own is not None else self.sensitivity.get(device, schema_name)

    def set_device_per_week(self, device: str, per_week: float | None) -> None:
        """Set (or with None, drop) a device's own rate; it applies from its next reading."""
        if per_week is None:
            self.device_per_week.pop(device.lower(), None)
        else:
            self.device_per_week[device.lower()] = per_week

    def watch_shipment(self, loggers: list[str], limit: ShipmentLimit) -> None:
        """Judge ``loggers``' readings against the shipment's range during its window."""
        for logger in loggers:
            self.shipments.setdefault(logger.lower(), {})[limit.shipment] = limit

    def _shipment_limits(
        self, device: str, spec: Schema, timestamp: int
    ) -> dict[str, tuple[float | None, float | None]]:
        """The shipments' ranges that apply to this reading, in the metrics' units (the
        narrowest where several apply)."""
        out: dict[str, tuple[float | None, float | None]] = {}
        for lim in self.shipments.get(device.lower(), {}).values():
            if lim.schema != spec.id or not lim.window_start_ms <= timestamp <= lim.window_end_ms:
                continue
            if lim.value_index >= len(spec.metrics):
                continue
            metric = spec.metrics[lim.value_index]
            low, high = lim.min_value / 10**metric.scale, lim.max_value / 10**metric.scale
            if metric.name in out:
                old_low, old_high = out[metric.name]
                low = low if old_low is None else max(low, old_low)
                high = high if old_high is None else min(high, old_high)
            out[metric.name] = (low, high)
        return out

    def _new(self, device: str, spec: Schema) -> _Device:
        guard = JointGuard(
            [m.name for m in spec.metrics],
            limits=self.rules.limits_of(spec),
            counters=self.rules.counters_of(spec),
            resolutions={m.name: 10.0**-m.scale for m in spec.metrics},
            per_week=self.per_week(device, spec.name),
            baseline={} if spec.name in self.rules.baseline else None,
        )
        return _Device(guard, EventGate(cooldown=self.cooldown, clear=self.clear), None)

    def observe(
        self,
        *,
        reading_id: int,
        device: str,
        schema: bytes,
        timestamp: int,
        values: tuple[int, ...],
    ) -> list[AnomalyEvent]:
        """Score and learn one reading; its events: the alarm it opens, or a change point
        reported (one event, naming the first metric; check ``change`` when only the change
        detector saw it)."""
        try:
            spec: Schema = self.schemas.by_id(schema)
        except UnknownSchemaError:
            return []
        key = (device, spec.name)
        state = self.streams.get(key)
        if state is None:
            state = self.streams[key] = self._new(device, spec)
        self.dirty.add(key)
        if state.spec is not spec:
            state.spec = spec
            state.names = tuple(m.name for m in spec.metrics)
            state.divisors = tuple(10**m.scale for m in spec.metrics)
            state.lower = device.lower()
        xs = {
            name: raw / d for name, d, raw in zip(state.names, state.divisors, values, strict=False)
        }
        guard = state.guard
        # ``per_week`` and ``thresholds.get``, from the device's cache while the settings stand
        if state.rate_from is not self.sensitivity:
            state.rate_from = self.sensitivity
            state.rate = self.sensitivity.get(device, spec.name)
        own = self.device_per_week.get(state.lower)
        per_week = own if own is not None else state.rate
        if guard.per_week != per_week:
            guard.set_per_week(per_week)
        shipment = self._shipment_limits(device, spec, timestamp) if self.shipments else {}
        result = guard.step(xs, timestamp, limits=shipment)
        gate = state.gate
        if state.threshold_from is not self.thresholds:
            state.threshold_from = self.thresholds
            state.threshold = self.thresholds.get(device, spec.name)
        gate.threshold = state.threshold
        was_open = gate.open
        # a change point (a regime's onset, a new phase, its return) is an event at once: within
        # an open alarm, or opening one when the reading is already suspicious (past the gate's
        # clearing level): a change between two normal regimes is no alarm
        change = result.change and (gate.open or result.score >= gate.threshold * gate.clear)
        level = max(result.score, gate.threshold) if change else result.score
        opened = gate.update(level)
        events: list[AnomalyEvent] = []
        if opened or (gate.open and level >= gate.threshold):
            name = result.metrics[0] if result.metrics else spec.metrics[0].name
            metric = {m.name: m for m in spec.metrics}[name]
            low, high, expected = self._expected(guard, result, name, shipment)
            raw = dict(zip((m.name for m in spec.metrics), values, strict=False))
            value = metric.to_decimal(raw[name])
            message = self._message(metric, value, low, high, result.check)
            low_s, high_s = _fmt(metric, low), _fmt(metric, high)
            if guard.streams[name].counter:  # the range is of its rate, not of the count
                message = f"{name} = {value} {metric.unit}: an unusual rate of increase"
                low_s = high_s = None
            if opened or change:
                events.append(
                    AnomalyEvent(
                        reading_id=reading_id, device=device, schema=schema,
                        schema_name=spec.name, metric=name, unit=metric.unit,
                        timestamp=timestamp, value=xs[name], score=result.score,
                        expected=expected, low=low, high=high, check=result.check,
                        detector=guard.kind,
                    )
                )  # fmt: skip
            self._update_alarm(
                state, device, schema, result, timestamp, reading_id,
                str(value), low_s, high_s, message,
            )  # fmt: skip
        elif was_open and not gate.open and state.alarm is not None:
            state.alarm.cleared_at_ms = timestamp
            self._alarms[id(state.alarm)] = state.alarm
            state.alarm = None
        return events

    @staticmethod
    def _expected(
        guard: JointGuard,
        result: JointResult,
        name: str,
        shipment: Mapping[str, tuple[float | None, float | None]],
    ) -> tuple[float, float, float]:
        if result.check == "limit":
            # the narrowest of the schema's range and the shipments' that apply
            low, high = guard.limits.get(name, (None, None))
            s_low, s_high = shipment.get(name, (None, None))
            if s_low is not None:
                low = s_low if low is None else max(low, s_low)
            if s_high is not None:
                high = s_high if high is None else min(high, s_high)
            a = result.parts.get(name)
            mid = a.predicted if a is not None else 0.0
            return (
                low if low is not None else float("-inf"),
                high if high is not None else float("inf"),
                mid,
            )
        return guard.expected_range(name)

    @staticmethod
    def _message(metric: Metric, value: Decimal, low: float, high: float, check: str) -> str:
        if check == "limit":
            return (
                f"{metric.name} = {value} {metric.unit}, outside the hard limit "
                f"{low:g} to {high:g} {metric.unit}"
            )
        return (
            f"{metric.name} = {value} {metric.unit}, expected {low:.4g} to {high:.4g} "
            f"{metric.unit} ({check})"
        )

    def _update_alarm(
        self,
        state: _Device,
        device: str,
        schema: bytes,
        result: JointResult,
        t: int,
        reading_id: int,
        value: str | None,
        low: str | None,
        high: str | None,
        message: str,
    ) -> None:
        alarm = state.alarm
        severity = _severity(result)
        if alarm is None:
            alarm = state.alarm = AlarmChange(
                alarm_id=None, device=device, schema=schema, metrics=list(result.metrics),
                check=result.check, severity=severity, first_seen_ms=t, last_seen_ms=t,
                count=1, max_score=result.score, last_value=value, expected_low=low,
                expected_high=high, reading_id=reading_id, message=message,
            )  # fmt: skip
        else:
            alarm.count += 1
            alarm.last_seen_ms = t
            alarm.metrics += [m for m in result.metrics if m not in alarm.metrics]
            if result.score >= alarm.max_score or result.check == "limit":
                alarm.check = result.check if alarm.check != "limit" else "limit"
            alarm.max_score = max(alarm.max_score, result.score)
            if _RANK[severity] > _RANK[alarm.severity]:
                alarm.severity = severity
            alarm.last_value, alarm.expected_low, alarm.expected_high = value, low, high
            alarm.reading_id, alarm.message = reading_id, message
        self._alarms[id(alarm)] = alarm

    def take_alarms(self) -> list[AlarmChange]:
        """The alarms opened, updated or cleared since the last call (to store them)."""
        changes, self._alarms = list(self._alarms.values()), {}
        return changes

    def state(self, key: StreamKey) -> dict[str, Any]:
        s = self.streams[key]
        alarm = None
        if s.alarm is not None:
            alarm = asdict(s.alarm) | {"schema": s.alarm.schema.hex(), "stored": None}
        return {"guard": s.guard.to_state(), "gate": s.gate.to_state(), "alarm": alarm}

    def load(self, key: StreamKey, state: dict[str, Any]) -> None:
        if "guard" not in state:
            return  # a state of the earlier per-metric design: start this device afresh
        try:
            gate = EventGate(cooldown=self.cooldown, clear=self.clear)
            gate.load(state["gate"])
            alarm = None
            if state.get("alarm"):
                fields = dict(state["alarm"]) | {"stored": None}
                fields["schema"] = bytes.fromhex(fields["schema"])
                alarm = AlarmChange(**fields)
            guard = JointGuard.from_state(state["guard"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # a damaged saved state must not stop the worker (nor be judged with): the device
            # starts afresh, as a new one would
            log.warning("AI state of %s is unreadable (%s): the device starts afresh", key, exc)
            return
        self.streams[key] = _Device(guard, gate, alarm)

    def forget(self, device: str) -> None:
        """Drop what is known of ``device``'s streams (re-commissioned): its next readings start
        a learning period, as a new device's do."""
        for key in [k for k in self.streams if k[0].lower() == device.lower()]:
            del self.streams[key]
            self.dirty.discard(key)
        for ref, change in list(self._alarms.items()):
            if change.device.lower() == device.lower():
                del self._alarms[ref]

    def take_dirty(self) -> dict[StreamKey, dict[str, Any]]:
        """The states of the streams changed since the last call (to persist them)."""
        dirty, self.dirty = self.dirty, set()
        return {key: self.state(key) for key in dirty}


def _fmt(metric: Metric, x: float | Decimal) -> str | None:
    """A value as a decimal string at the metric's scale (None for an open range end)."""
    if isinstance(x, Decimal):
        return str(x)
    if x != x or x in (float("inf"), float("-inf")):
        return None
    return str(round(Decimal(repr(x)), metric.scale))
