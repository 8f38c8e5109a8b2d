"""Per-stream calibration of a check's statistic into a tail probability, and the alarm point.

A check (a residual in robust sigmas, a short-run mean of them, a joint sum) produces a
non-negative statistic ``v``. Whether ``v = 6`` is rare depends on the stream: a Gaussian sensor
sees it once in 10^9 points, a spiky counter every day. :class:`TailCalibrator` learns, per
stream, how often ``v`` exceeds a threshold ``u`` and the mean excess above it (peaks over
threshold with an exponential tail, the shape-0 generalised Pareto), and answers
``P(V >= v) = q * exp(-(v - u) / m)``. This is the idea of HTM's "anomaly likelihood": the raw
score is judged against this stream's own recent distribution of raw scores.

Learning is robust, never starved: every point updates the exceedance rate, and an excess is
clipped at ``clip`` times the current mean excess before it updates ``m``, so a burst of huge
values widens the tail only gradually.

The alarm point comes from an expected false-alarm rate: a stream sampled every ``interval_ms``
that should raise about ``per_week`` false alarms a week alarms at tail probability
``per_week * interval_ms / WEEK_MS`` (:func:`alarm_probability`); a score is ``log(1/p) /
log(1/p_alarm)``, so ``1.0`` is the alarm point whatever the rate.

>>> cal = TailCalibrator()
>>> for i in range(2000):
...     cal.learn((i * 0.618) % 1 * 3)   # spread over 0..3
>>> cal.p(1.0) > 0.3 and cal.p(8.0) < 1e-4
True
>>> round(score(1e-6, alarm_probability(1.0, 1000)), 3)
1.038
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "P_FLOOR",
    "SCORE_CAP",
    "WEEK_MS",
    "TailCalibrator",
    "alarm_probability",
    "score",
]

WEEK_MS = 7 * 86_400_000
P_FLOOR = 1e-30
"""The smallest tail probability reported (a hard-limit breach is reported at this floor)."""
SCORE_CAP = 10.0
"""Scores are capped: ten times past the alarm point ranks like any larger number."""


def alarm_probability(per_week: float, interval_ms: float) -> float:
    """The per-point tail probability at which a stream sampled every ``interval_ms`` raises
    about ``per_week`` false alarms a week (clamped to [1e-12, 0.05])."""
    p = per_week * max(interval_ms, 1.0) / WEEK_MS
    return min(max(p, 1e-12), 0.05)


def score(p: float, p_alarm: float) -> float:
    """``log(1/p) / log(1/p_alarm)``, capped at :data:`SCORE_CAP`: 1.0 at the alarm point."""
    p = min(max(p, P_FLOOR), 1.0)
    return min(math.log(p) / math.log(p_alarm), SCORE_CAP)


@dataclass(slots=True)
class TailCalibrator:
    """``P(V >= v)`` for one stream's statistic ``v``, learned online (see the module docstring).

    ``u``: the threshold above which the tail is modelled; ``rate``: the learning rate of the
    exceedance frequency (memory ~1/rate points); ``q``, ``m``: the exceedance frequency and
    mean excess, starting at the values of |N(0, 1)| for ``u = 2``.
    """

    u: float = 2.0
    rate: float = 0.002
    clip: float = 3.0
    q: float = 0.0455
    m: float = 0.42
    n: int = 0
    ne: int = 0
    min_n: int = 0

    def p(self, v: float) -> float:
        if self.n < self.min_n:
            return 1.0
        if v <= self.u:
            return min(1.0, self.q + (1.0 - self.q) * (1.0 - max(v, 0.0) / self.u))
        return max(self.q * math.exp(-(v - self.u) / self.m), P_FLOOR)

    def learn(self, v: float) -> None:
        """Learn one statistic. A value already in the far tail (p < 1e-3) counts a tenth: a
        long anomaly widens the tail slowly instead of teaching the model it is normal."""
        w = 1.0 if self.p(v) >= 1e-3 else 0.1
        self.n += 1
        r = w * max(self.rate, 1.0 / (self.n + 200))
        exceeded = v > self.u
        self.q += r * ((1.0 if exceeded else 0.0) - self.q)
        self.q = max(self.q, 1e-4)
        if exceeded:
            self.ne += 1
            g = w * max(self.rate, 1.0 / (self.ne + 50))
            self.m += g * (min(v - self.u, self.clip * self.m) - self.m)
            self.m = max(self.m, 0.05)

    def to_state(self) -> list[float]:
        return [self.u, self.rate, self.clip, self.q, self.m, self.n, self.ne, self.min_n]

    @classmethod
    def from_state(cls, state: list[Any]) -> TailCalibrator:
        u, rate, clip, q, m, n, ne, min_n = state
        return cls(
            float(u), float(rate), float(clip), float(q), float(m), int(n), int(ne), int(min_n)
        )
