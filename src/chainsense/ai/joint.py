"""JointGuard: the default detector. One per (device, schema): the schema's metrics judged together.

Each metric has its own :class:`~chainsense.ai.robust.RobustStream` (robust, calibrated, with
re-baselining; counters as rates). On top of them:

- a **joint** check: the sum over metrics of ``-ln p`` (their level and shift checks: several
  metrics moving moderately at once, as a pump's current, vibration and temperature do),
  standardised and calibrated per device by its own
  :class:`~chainsense.ai.calibrate.TailCalibrator`, and never more confident than Fisher's
  combination of the parts;
- **hard limits** (a schema's or a shipment's allowed range): a value outside raises at once
  (probability floor, check ``limit``), whatever the model learned.

All checks are combined on the probability scale, ``p = (metrics + 1) * min p``, and turned
into a capped score whose 1.0 is the alarm point of the configured false-alarm rate
(``per_week``). The result names the metric(s) responsible.

With ``baseline`` (machines: a pump, a motor, whose first readings are normal operation), a
:class:`~chainsense.ai.baseline.BaselineModel` learns the device's first readings and, once
fitted, takes over the sustained and multivariate judgement (check ``baseline``: a MEWMA
Hotelling statistic against the commissioning window, calibrated on its held-out part); the
per-metric models then keep only their single-reading checks (``level``, ``stuck`` and the joint
sum of the levels), whose ``shift`` check raised most false alarms on a real pump (SKAB).

>>> g = JointGuard(("temperature", "humidity"), limits={"temperature": (2.0, 8.0)})
>>> for i in range(200):
...     _ = g.step({"temperature": 4.5 + (i % 3) * 0.01, "humidity": 65.0}, i * 1000)
>>> r = g.step({"temperature": 9.0, "humidity": 65.0}, 200_000)
>>> r.check, r.metrics, r.score >= 1
('limit', ['temperature'], True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chainsense.ai.base import register
from chainsense.ai.baseline import BaselineModel
from chainsense.ai.calibrate import P_FLOOR, TailCalibrator, alarm_probability, score
from chainsense.ai.robust import Assessment, RobustStream

__all__ = ["JointGuard", "JointResult"]

_FACTORIAL = tuple(math.factorial(i) for i in range(171))


def _outside(limit: tuple[float | None, float | None], x: float) -> bool:
    low, high = limit
    return (low is not None and x < low) or (high is not None and x > high)


@dataclass(frozen=True, slots=True)
class JointResult:
    """One reading as judged: the score (1.0 = alarm point), its probability, the check that
    decided it, the metrics responsible, and each metric's own assessment."""

    score: float
    p: float
    check: str
    metrics: list[str]
    parts: dict[str, Assessment] = field(default_factory=dict)
    change: bool = False
    """A change point (the commissioning baseline's change detector): a regime starts here."""


@register
class JointGuard:
    """See the module docstring. ``limits``: metric -> (low, high) hard range, either may be None;
    ``counters``: metrics that are cumulative counters; ``resolutions``: metric -> the
    fixed-point step; ``options``: RobustStream keyword arguments; ``baseline``: BaselineModel
    keyword arguments (``{}`` for its defaults), None for no commissioning baseline."""

    kind: ClassVar[str] = "joint_guard"

    def __init__(
        self,
        metrics: Sequence[str],
        *,
        limits: Mapping[str, tuple[float | None, float | None]] | None = None,
        counters: Sequence[str] = (),
        resolutions: Mapping[str, float] | None = None,
        per_week: float = 1.0,
        options: Mapping[str, Any] | None = None,
        baseline: Mapping[str, Any] | None = None,
    ) -> None:
        self.metrics = list(metrics)
        self.limits = dict(limits or {})
        self.per_week = per_week
        opts = dict(options or {})
        res = resolutions or {}
        self.streams = {
            m: RobustStream(
                counter=m in counters, resolution=res.get(m, 0.0), per_week=per_week, **opts
            )
            for m in self.metrics
        }
        self.cal_joint = TailCalibrator()
        # the commissioning baseline (when asked for): the non-counter metrics together
        judged = [m for m in self.metrics if m not in counters]
        self.baseline: BaselineModel | None = None
        if baseline is not None and len(judged) >= 2:
            self.baseline = BaselineModel(judged, resolutions=res, **dict(baseline))

    def set_per_week(self, per_week: float) -> None:
        self.per_week = per_week
        for s in self.streams.values():
            s.per_week = per_week

    def p_alarm(self) -> float:
        return self.streams[self.metrics[0]].p_alarm()

    def _limit(self, metric: str, x: float) -> bool:
        return _outside(self.limits.get(metric, (None, None)), x)

    def step(
        self,
        values: Mapping[str, float],
        t: int,
        *,
        limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    ) -> JointResult:
        """Judge one reading (metric -> value), then learn it. ``limits``: hard ranges for this
        reading only (a shipment's, during its window), besides the guard's own."""
        parts: dict[str, Assessment] = {}
        extra = limits or {}
        own = self.limits
        breached: list[str] = []
        if own or extra:
            breached = [
                m
                for m in self.metrics
                if m in values
                and (self._limit(m, values[m]) or _outside(extra.get(m, (None, None)), values[m]))
            ]
        streams = self.streams
        for m in self.metrics:
            if m in values:
                # a value past a hard limit is known bad, not a new normal: it is not learned
                if breached and m in breached:
                    parts[m] = streams[m].see(values[m], t)
                else:
                    parts[m] = streams[m].step(values[m], t)
        first = streams[self.metrics[0]]  # ``self.p_alarm()``
        p_alarm = alarm_probability(first.per_week, first.interval or 1000.0)
        base = None
        baseline = self.baseline
        if baseline is not None:
            # a breached value is not part of the baseline (the metric keeps its last value)
            kept = {m: v for m, v in values.items() if m not in breached} if breached else values
            base = baseline.judge(kept, t, p_alarm=p_alarm)
        if breached:
            return JointResult(score(P_FLOOR, p_alarm), P_FLOOR, "limit", breached, parts)
        if base is None:  # no baseline, or not fitted yet
            return self._streams(parts, p_alarm)
        # Once fitted, the baseline judges sustained moves and the metrics together (it replaces
        # the per-metric ``shift`` and the ``joint`` sum); the per-metric models keep the
        # single-reading checks (``level``, ``stuck``). Bonferroni over the two families.
        base_p, t2, shares, moved = base
        verdict = self._verdict(parts, p_alarm, shift=False)
        r_p, r_check, r_named = verdict if verdict is not None else (1.0, "level", [])
        p = min(1.0, 2.0 * min(r_p, base_p))
        s = score(p, p_alarm)
        change = moved is not None
        if moved is not None and s < 1.0:  # a change point the other checks do not see (yet)
            return JointResult(s, p, "change", moved, parts, change=True)
        if base_p < r_p:
            named = baseline.names(shares, t2)  # type: ignore[union-attr]
            return JointResult(s, p, "baseline", named, parts, change=change)
        return JointResult(s, p, r_check, r_named, parts, change=change)

    def _streams(
        self, parts: dict[str, Assessment], p_alarm: float, *, shift: bool = True
    ) -> JointResult:
        """The per-metric models' verdict as a result (see :meth:`_verdict`)."""
        verdict = self._verdict(parts, p_alarm, shift=shift)
        if verdict is None:
            return JointResult(0.0, 1.0, "level", [], parts)
        p, check, named = verdict
        return JointResult(score(p, p_alarm), p, check, named, parts)

    def _verdict_reference(
        self, parts: dict[str, Assessment], p_alarm: float, *, shift: bool = True
    ) -> tuple[float, str, list[str]] | None:
        """:meth:`_verdict` from :meth:`_streams_reference` (the tests compare the two)."""
        r = self._streams_reference(parts, p_alarm, shift=shift)
        if not any(a.ready for a in parts.values()):
            return None
        return r.p, r.check, r.metrics

    def _verdict(
        self, parts: dict[str, Assessment], p_alarm: float, *, shift: bool = True
    ) -> tuple[float, str, list[str]] | None:
        """The per-metric models' verdict (their own checks and the joint sum): ``(p, check,
        metrics)``, None when no part is ready; without
        ``shift``, their single-reading checks only (``level``, ``stuck``, and the joint sum of
        the levels).

        A hot path (once a reading): the builtins written out with the same arithmetic, in the
        same order, as :meth:`_streams_reference` (the tests compare the two); ``min(a, b)`` is
        ``b if b < a else a`` and ``max(a, b)`` is ``b if b > a else a``, as the builtins."""
        # each part's p (``p_of``) and the sum of -ln p over the ready ones, in one pass
        logs: list[float] = []  # summed by ``sum`` (compensated from Python 3.12), as before
        best: str | None = None
        p_best = 1.0
        ps: list[float] = []
        for m, a in parts.items():
            pl = a.p_level
            if shift:  # ``a.p``
                pm = pl
                if a.p_shift < pm:
                    pm = a.p_shift
                if a.p_stuck < pm:
                    pm = a.p_stuck
                pa = 3.0 * pm
            else:
                pa = 2.0 * (a.p_stuck if a.p_stuck < pl else pl)
            pa = pa if pa < 1.0 else 1.0
            ps.append(pa)
            if best is None or pa < p_best:  # ``min(parts, key=p_of)``: the first smallest
                best, p_best = m, pa
            if a.ready:
                x = a.p_shift if shift else 1.0
                x = x if x < pl else pl
                logs.append(-math.log(P_FLOOR if x < P_FLOOR else x))
        if not logs:
            return None
        k = len(logs)
        f = sum(logs)
        joint_z = (f - k) / math.sqrt(k)
        if k > 1:
            # Never more confident than Fisher's combination of the parts (independent
            # p-values): a calibrator that has seen no excursion yet must not extrapolate one
            # into an alarm.
            facts = _FACTORIAL[:k] if k <= len(_FACTORIAL) else map(math.factorial, range(k))
            fisher = math.exp(-f) * sum([f**i / c for i, c in enumerate(facts)])
            fisher = 1.0 if fisher > 1.0 else fisher
            p_joint = self.cal_joint.p(joint_z)
            if fisher > p_joint:
                p_joint = fisher
        else:
            p_joint = 1.0
        self.cal_joint.learn(50.0 if joint_z > 50.0 else joint_z)
        bonferroni = len(self.metrics) + 1
        if p_joint < p_best:
            p = bonferroni * p_joint
            p = p if p < 1.0 else 1.0
            check = "joint"
            order = sorted(parts, key=lambda m: parts[m].p_level)
            named = [m for m in order if parts[m].p_level <= 0.01] or order[:1]
        else:
            p = bonferroni * p_best
            p = p if p < 1.0 else 1.0
            a = parts[best]  # type: ignore[index]
            check = a.check if shift or a.p_level <= a.p_stuck else "stuck"
            cut = max(p_best * 100, p_alarm / bonferroni)
            # the parts within ``cut``, by their p (a stable sort: ties keep the parts' order)
            kept = [i for i, pa in enumerate(ps) if pa <= cut]
            if len(kept) > 1:
                kept.sort(key=ps.__getitem__)
            names = list(parts)
            named = [names[i] for i in kept]
        return p, check, named

    def _step_reference(
        self,
        values: Mapping[str, float],
        t: int,
        *,
        limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    ) -> JointResult:
        """:meth:`step` as first written (the tests compare the two)."""
        parts: dict[str, Assessment] = {}
        extra = limits or {}
        breached = [
            m
            for m in self.metrics
            if m in values
            and (self._limit(m, values[m]) or _outside(extra.get(m, (None, None)), values[m]))
        ]
        for m in self.metrics:
            if m in values:
                stream = self.streams[m]
                parts[m] = stream.see(values[m], t) if m in breached else stream.step(values[m], t)
        p_alarm = self.p_alarm()
        base = None
        if self.baseline is not None:
            base = self.baseline.step(
                {m: v for m, v in values.items() if m not in breached}, t, p_alarm=p_alarm
            )
        if breached:
            return JointResult(score(P_FLOOR, p_alarm), P_FLOOR, "limit", breached, parts)
        if base is None or not base.ready:
            return self._streams_reference(parts, p_alarm)
        result = self._streams_reference(parts, p_alarm, shift=False)
        p = min(1.0, 2.0 * min(result.p, base.p))
        s = score(p, p_alarm)
        if base.change and s < 1.0:
            return JointResult(s, p, "change", base.change_metrics, parts, change=True)
        if base.p < result.p:
            return JointResult(s, p, "baseline", base.metrics, parts, change=base.change)
        return JointResult(s, p, result.check, result.metrics, parts, change=base.change)

    def _streams_reference(
        self, parts: dict[str, Assessment], p_alarm: float, *, shift: bool = True
    ) -> JointResult:
        """:meth:`_streams` as first written (the tests compare the two)."""
        ready = [a for a in parts.values() if a.ready]
        if not ready:
            return JointResult(0.0, 1.0, "level", [], parts)

        def p_of(a: Assessment) -> float:
            return a.p if shift else min(1.0, 2.0 * min(a.p_level, a.p_stuck))

        def check_of(a: Assessment) -> str:
            return a.check if shift or a.p_level <= a.p_stuck else "stuck"

        k = len(ready)
        f = sum(-math.log(max(min(a.p_level, a.p_shift if shift else 1.0), P_FLOOR)) for a in ready)
        joint_z = (f - k) / math.sqrt(k)
        fisher = math.exp(-f) * sum(f**i / math.factorial(i) for i in range(k))
        p_joint = max(self.cal_joint.p(joint_z), min(fisher, 1.0)) if k > 1 else 1.0
        self.cal_joint.learn(min(joint_z, 50.0))
        best = min(parts, key=lambda m: p_of(parts[m]))
        p_best = p_of(parts[best])
        bonferroni = len(self.metrics) + 1
        if p_joint < p_best:
            p = min(1.0, bonferroni * p_joint)
            check = "joint"
            order = sorted(parts, key=lambda m: parts[m].p_level)
            named = [m for m in order if parts[m].p_level <= 0.01] or order[:1]
        else:
            p = min(1.0, bonferroni * p_best)
            check = check_of(parts[best])
            cut = max(p_best * 100, p_alarm / bonferroni)
            named = sorted(
                (m for m in parts if p_of(parts[m]) <= cut), key=lambda m: p_of(parts[m])
            )
        return JointResult(score(p, p_alarm), p, check, named, parts)

    def expected_range(self, metric: str) -> tuple[float, float, float]:
        """(low, high, expected) of ``metric`` at the alarm point, as the model stands."""
        s = self.streams[metric]
        half = s.half_width()
        mid = s.level + s.offset(s.last_t or 0)[1]
        return mid - half, mid + half, mid

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metrics": self.metrics,
            "limits": {m: list(v) for m, v in self.limits.items()},
            "per_week": self.per_week,
            "streams": {m: s.to_state() for m, s in self.streams.items()},
            "cal_joint": self.cal_joint.to_state(),
            "baseline": self.baseline.to_state() if self.baseline is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> JointGuard:
        g = cls.__new__(cls)
        g.metrics = list(state["metrics"])
        g.limits = {m: (v[0], v[1]) for m, v in state["limits"].items()}
        g.per_week = float(state["per_week"])
        g.streams = {m: RobustStream.from_state(s) for m, s in state["streams"].items()}
        g.cal_joint = TailCalibrator.from_state(state["cal_joint"])
        # a state saved before the baseline existed: the device keeps going without one
        base = state.get("baseline")
        g.baseline = BaselineModel.from_state(base) if base else None
        return g
