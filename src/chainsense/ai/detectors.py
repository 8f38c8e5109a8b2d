"""The detectors. Each watches one stream; ``score >= 1`` is anomalous at the default sensitivity.

- :class:`RollingMAD` — the robust statistical baseline: distance from the rolling median in
  units of the rolling MAD (median absolute deviation).
- :class:`EWMAZ` — exponentially weighted mean and variance (a z-score); no seasonality.
- :class:`SeasonalEWMA` — additive Holt-Winters without trend, its season indexed by time of day
  (so irregular sampling is fine), with a robust exponentially weighted residual scale per bin.
- :class:`SensorGuard` — the default: the seasonal residual model plus three checks a sensor
  fails in ways the residual alone misses: a slow drift of the level away from its long-run
  reference, a stuck value (a run of identical readings far longer than the stream's own repeat
  rate explains) and a noise burst (short-term residual energy). ``bench/detect.py`` compares
  all four on labelled synthetic sensor streams; the README has the table.

>>> mad = RollingMAD(window=30, min_points=10)
>>> for i in range(30):
...     mad.learn_one(20.0 + (i % 3) * 0.1, i * 60_000)
>>> mad.score_one(20.1, 30 * 60_000) < 1 <= mad.score_one(35.0, 30 * 60_000)
True
>>> mad.expected(35.0, 30 * 60_000)
Expected(value=20.1, low=19.3..., high=20.8..., check='level')
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any, ClassVar

from chainsense.ai.base import Expected, register

__all__ = ["DAY_MS", "EWMAZ", "RollingMAD", "SeasonalEWMA"]

DAY_MS = 86_400_000
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_MEAN_ABS_TO_SIGMA = 1.2533  # sqrt(pi/2): E|N(0, s)| times this is s


def _floor(center: float) -> float:
    return 1e-9 + 1e-6 * abs(center)


@register
class RollingMAD:
    """Distance from the median of the last ``window`` learned values, in MADs.

    score = |x - median| / (k * 1.4826 * MAD); 0 until ``min_points`` values were learned.
    """

    kind: ClassVar[str] = "rolling_mad"

    def __init__(self, *, window: int = 120, k: float = 5.0, min_points: int = 30) -> None:
        self.window = window
        self.k = k
        self.min_points = min_points
        self.values: deque[float] = deque()
        self.sorted: list[float] = []
        self.count = 0
        self._mad: float | None = None

    def _median(self) -> float:
        s = self.sorted
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2

    def _stats(self) -> tuple[float, float]:
        median = self._median()
        return median, max(self._mad or 0.0, _floor(median))

    def _refresh_mad(self) -> None:
        s = self.sorted
        n = len(s)
        median = self._median()
        deviations = sorted(abs(v - median) for v in s)
        mad = deviations[n // 2] if n % 2 else (deviations[n // 2 - 1] + deviations[n // 2]) / 2
        # Quantised readings can have a MAD of 0 with real spread: fall back to the mean
        # absolute deviation, as robust-statistics practice does.
        self._mad = _MAD_TO_SIGMA * mad or _MEAN_ABS_TO_SIGMA * sum(deviations) / n

    def score_one(self, x: float, t: int) -> float:
        if len(self.sorted) < self.min_points:
            return 0.0
        median, sigma = self._stats()
        return abs(x - median) / (self.k * sigma)

    def learn_one(self, x: float, t: int) -> None:
        self.count += 1
        self.values.append(x)
        bisect.insort(self.sorted, x)
        if len(self.values) > self.window:
            old = self.values.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]
        # The MAD moves slowly: recompute it every window/8 points, not every point.
        if self.count % max(1, self.window // 8) == 0 or len(self.sorted) <= self.min_points:
            self._refresh_mad()

    def expected(self, x: float, t: int) -> Expected:
        if not self.sorted or self._mad is None:
            return Expected(x, x, x)
        median, sigma = self._stats()
        return Expected(median, median - self.k * sigma, median + self.k * sigma)

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "window": self.window,
            "k": self.k,
            "min_points": self.min_points,
            "values": list(self.values),
            "count": self.count,
            "mad": self._mad,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingMAD:
        d = cls(window=state["window"], k=state["k"], min_points=state["min_points"])
        d.values = deque(float(v) for v in state["values"])
        d.sorted = sorted(d.values)
        d.count = state["count"]
        d._mad = state["mad"]
        return d


@register
class EWMAZ:
    """z-score against an exponentially weighted mean and variance (no seasonality)."""

    kind: ClassVar[str] = "ewma_z"

    def __init__(self, *, alpha: float = 0.02, k: float = 5.0, warmup: int = 30) -> None:
        self.alpha = alpha
        self.k = k
        self.warmup = warmup
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def _sigma(self) -> float:
        return max(math.sqrt(self.var), _floor(self.mean))

    def score_one(self, x: float, t: int) -> float:
        if self.n < self.warmup:
            return 0.0
        return abs(x - self.mean) / (self.k * self._sigma())

    def learn_one(self, x: float, t: int) -> None:
        self.n += 1
        a = max(self.alpha, 1.0 / self.n)
        delta = x - self.mean
        self.mean += a * delta
        self.var = (1 - a) * (self.var + a * delta * delta)

    def expected(self, x: float, t: int) -> Expected:
        s = self.k * self._sigma()
        return Expected(self.mean, self.mean - s, self.mean + s)

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "alpha": self.alpha,
            "k": self.k,
            "warmup": self.warmup,
            "n": self.n,
            "mean": self.mean,
            "var": self.var,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EWMAZ:
        d = cls(alpha=state["alpha"], k=state["k"], warmup=state["warmup"])
        d.n, d.mean, d.var = state["n"], state["mean"], state["var"]
        return d


@register
class SeasonalEWMA:
    """Additive level + time-of-day and day-of-week season, scored by the residual in robust sigmas.

    The day is cut into ``bins``; each bin keeps its seasonal offset and its own residual scale
    (a flat night and a busy noon of an energy meter are not equally noisy). A weekly
    correction per (weekday, bin) is learned on top and shrunk towards 0 until it has seen a
    few weeks (a machine idle on Sundays is not an anomaly every Sunday). A bin never seen yet
    scores 0: the first day is the learning period, which persisted state saves on restart.
    """

    kind: ClassVar[str] = "seasonal_ewma"
    _FIELDS: ClassVar[tuple[str, ...]] = (
        "bins", "alpha", "gamma", "beta", "k", "warmup",
        "n", "level", "scale", "season", "bin_n", "bin_scale", "week", "week_n",
    )  # fmt: skip
    _SHRINK = 4  # weekly points (of one bin) at which the weekly correction counts half

    def __init__(
        self,
        *,
        bins: int = 48,
        alpha: float = 0.01,
        gamma: float = 0.1,
        beta: float = 0.02,
        k: float = 5.0,
        warmup: int = 24,
    ) -> None:
        self.bins = bins
        self.alpha = alpha
        self.gamma = gamma
        self.beta = beta
        self.k = k
        self.warmup = warmup
        self.n = 0
        self.level = 0.0
        self.scale = 0.0
        self.season = [0.0] * bins
        self.bin_n = [0] * bins
        self.bin_scale = [0.0] * bins
        self.week = [0.0] * (7 * bins)
        self.week_n = [0] * (7 * bins)

    def _bin(self, t: int) -> int:
        return (t % DAY_MS) * self.bins // DAY_MS

    def _week_bin(self, t: int, b: int) -> int:
        return (t // DAY_MS % 7) * self.bins + b

    def _predict(self, t: int, b: int) -> tuple[float, float]:
        """The expected value at ``t`` (in day bin ``b``) and the residual sigma there."""
        overall = _MEAN_ABS_TO_SIGMA * self.scale
        local = _MEAN_ABS_TO_SIGMA * self.bin_scale[b] if self.bin_n[b] >= 6 else overall
        sigma = max(local, 0.5 * overall, _floor(self.level))
        w = self._week_bin(t, b)
        seen = self.week_n[w]
        weekly = self.week[w] * seen / (seen + self._SHRINK) if seen else 0.0
        return self.level + self.season[b] + weekly, sigma

    def _ready(self, b: int) -> bool:
        return self.n >= self.warmup and self.bin_n[b] > 0

    def score_one(self, x: float, t: int) -> float:
        b = self._bin(t)
        if not self._ready(b):
            return 0.0
        predicted, sigma = self._predict(t, b)
        return abs(x - predicted) / (self.k * sigma)

    def learn_one(self, x: float, t: int) -> None:
        b = self._bin(t)
        predicted, _ = self._predict(t, b)
        residual = abs(x - predicted)
        self.n += 1
        if self.n == 1:
            self.level = x
        if self.bin_n[b] == 0:
            self.season[b] = x - self.level
            residual = 0.0 if self.n == 1 else residual
        a = max(self.alpha, 1.0 / self.n)
        self.level += a * (x - self.season[b] - self.level)
        self.bin_n[b] += 1
        g = max(self.gamma, 1.0 / self.bin_n[b])
        self.season[b] += g * (x - self.level - self.season[b])
        w = self._week_bin(t, b)
        self.week_n[w] += 1
        self.week[w] += max(self.gamma, 1.0 / self.week_n[w]) * (
            x - self.level - self.season[b] - self.week[w]
        )
        if self.n > 1:
            self.scale += max(self.beta, 1.0 / (self.n - 1)) * (residual - self.scale)
            self.bin_scale[b] += max(self.beta * 2.5, 1.0 / self.bin_n[b]) * (
                residual - self.bin_scale[b]
            )

    def expected(self, x: float, t: int) -> Expected:
        b = self._bin(t)
        predicted, sigma = self._predict(t, b)
        return Expected(predicted, predicted - self.k * sigma, predicted + self.k * sigma)

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind} | {f: getattr(self, f) for f in self._FIELDS}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Any:
        d = cls.__new__(cls)
        for f in cls._FIELDS:
            value = state[f]
            setattr(d, f, list(value) if isinstance(value, list) else value)
        if len(d.season) != d.bins or len(d.week) != 7 * d.bins:
            raise ValueError("season length differs from bins")
        return d
