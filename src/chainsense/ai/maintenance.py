"""Predictive maintenance: remaining useful life from a metric's degradation trend.

:class:`DegradationTrend` fits ``value = a + b * hours`` by exponentially weighted least squares
(recent points count more; O(1) per point, JSON state). The remaining useful life is when that
line reaches the metric's limit; the band comes from the slope's standard error (slope +/- 2 SE).

>>> trend = DegradationTrend()
>>> for h in range(48):   # vibration rising 0.05 m/s2 per hour from 2.0
...     trend.learn_one(2.0 + 0.05 * h + (0.01 if h % 2 else -0.01), h * 3_600_000)
>>> life = trend.remaining_life(limit=7.1, now_ms=47 * 3_600_000)
>>> round(life.hours), life.low_hours < life.hours < life.high_hours
(55, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DegradationTrend", "RemainingLife"]

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class RemainingLife:
    """Hours until the trend reaches ``limit`` (with a band), or ``hours=None`` when it does not
    rise towards the limit."""

    current: float
    limit: float
    slope_per_hour: float
    hours: float | None
    low_hours: float | None
    high_hours: float | None
    points: int


class DegradationTrend:
    """Exponentially weighted linear trend of one stream (``decay`` per point)."""

    kind = "trend"

    def __init__(self, *, decay: float = 0.995) -> None:
        self.decay = decay
        self.t0: int | None = None
        self.n = 0
        self.sw = self.st = self.sy = self.stt = self.sty = self.syy = 0.0

    def learn_one(self, x: float, t: int) -> None:
        if self.t0 is None:
            self.t0 = t
        h = (t - self.t0) / _HOUR_MS
        d = self.decay
        self.n += 1
        self.sw = d * self.sw + 1
        self.st = d * self.st + h
        self.sy = d * self.sy + x
        self.stt = d * self.stt + h * h
        self.sty = d * self.sty + h * x
        self.syy = d * self.syy + x * x

    def remaining_life(self, *, limit: float, now_ms: int) -> RemainingLife | None:
        """None until there are 10 points spread over time."""
        if self.t0 is None or self.n < 10:
            return None
        var_t = self.stt - self.st * self.st / self.sw
        if var_t <= 1e-12:
            return None
        slope = (self.sty - self.st * self.sy / self.sw) / var_t
        intercept = (self.sy - slope * self.st) / self.sw
        now_h = (now_ms - self.t0) / _HOUR_MS
        current = intercept + slope * now_h
        sse = max(self.syy - intercept * self.sy - slope * self.sty, 0.0)
        n_eff = min(self.n, self.sw * self.sw / max(self.sw, 1e-12))
        se = math.sqrt(sse / max(n_eff - 2, 1) / var_t)

        def until(b: float) -> float | None:
            if current >= limit:
                return 0.0
            return (limit - current) / b if b > 0 else None

        return RemainingLife(
            current=current,
            limit=limit,
            slope_per_hour=slope,
            hours=until(slope),
            low_hours=until(slope + 2 * se),
            high_hours=until(slope - 2 * se),
            points=self.n,
        )

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("kind", "decay", "t0", "n", *_SUMS)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DegradationTrend:
        trend = cls(decay=state["decay"])
        trend.t0, trend.n = state["t0"], state["n"]
        for k in _SUMS:
            setattr(trend, k, state[k])
        return trend


_SUMS = ("sw", "st", "sy", "stt", "sty", "syy")
