"""Per-stream calibration of a check's statistic into a tail probability, and the alarm point.

A check (a residual in robust sigmas, a short-run mean of them, a joint sum) produces a
non-negative statistic ``v``. Whether ``v = 6`` is rare depends on the stream: a Gaussian sensor
sees it once in 10^9 points, a spiky counter every day. :class:`TailCalibrator` learns, per
stream, how often ``v`` exceeds two thresholds and answers with the exponential tail through
them (peaks over threshold, the shape-0 generalised Pareto):
``P(V >= v) = q * exp(-(v - u) / m)``. This is the idea of HTM's "anomaly likelihood": the raw
score is judged against this stream's own distribution of raw scores.

Learning is robust, never starved: every point updates two exceedance frequencies (of ``v > u``
and of ``v > u2``), and the tail is the exponential through them; a value counts once however
large it is, so nothing needs clipping and nothing is dropped.

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
    # once or twice a reading: ``min(max(p, 1e-12), 0.05)`` written out (the same result)
    p = per_week * (1.0 if interval_ms < 1.0 else interval_ms) / WEEK_MS
    p = 1e-12 if p < 1e-12 else p
    return 0.05 if p > 0.05 else p


def score(p: float, p_alarm: float) -> float:
    """``log(1/p) / log(1/p_alarm)``, capped at :data:`SCORE_CAP` (also the score of a hard-limit
    breach, reported at :data:`P_FLOOR`): 1.0 at the alarm point."""
    if p <= P_FLOOR:
        return SCORE_CAP
    # once or twice a reading: ``min(log(min(p, 1)) / log(p_alarm), SCORE_CAP)`` written out
    s = math.log(1.0 if p > 1.0 else p) / math.log(p_alarm)
    return SCORE_CAP if s > SCORE_CAP else s


@dataclass(slots=True)
class TailCalibrator:
    """``P(V >= v)`` for one stream's statistic ``v``, learned online (see the module docstring).

    Two exceedance frequencies are learned: ``q`` of ``v > u`` (memory ~1/``rate`` points) and
    ``q2`` of ``v > u2`` (a longer memory, ~1/``rate2``). The tail between and beyond is the
    exponential through both, ``P(v) = q * exp(-(v - u) / m)`` with
    ``m = (u2 - u) / ln(q / q2)`` (at least ``m_min``, the Gaussian-like tail). Frequencies, not
    sizes, are learned: one huge value counts once, however huge, so no clipping is needed and
    a stream whose large values are common (heavy tails, counts) learns it within a few hundred
    points. Priors are those of |N(0, 1)|, worth ``prior`` points.
    """

    u: float = 2.0
    u2: float = 5.0
    rate: float = 0.002
    rate2: float = 0.0002
    q: float = 0.0455
    q2: float = 1e-6
    m_min: float = 0.3
    n: int = 0
    min_n: int = 0
    prior: int = 200
    prior2: int = 2000

    @property
    def m(self) -> float:
        ratio = self.q / max(self.q2, 1e-12)
        if ratio <= 1.0:
            return 50.0
        return min(max((self.u2 - self.u) / math.log(ratio), self.m_min), 50.0)

    def p(self, v: float) -> float:
        # the hot path (about nine calls a reading): the builtins written out, the same
        # arithmetic (``min(a, b)`` is ``b if b < a else a``, what the builtin returns)
        if self.n < self.min_n:
            return 1.0
        u = self.u
        q = self.q
        if v <= u:
            p = q + (1.0 - q) * (1.0 - (0.0 if v < 0.0 else v) / u)
            return p if p < 1.0 else 1.0
        p = q * math.exp(-(v - u) / self.m)
        return P_FLOOR if p < P_FLOOR else p

    def p_learn(self, v: float) -> float:
        """:meth:`p` of ``v``, then :meth:`learn` it: one call where both are wanted (three a
        stream a reading), the two bodies one after the other."""
        u = self.u
        q = self.q
        if self.n < self.min_n:
            p = 1.0
        elif v <= u:
            p = q + (1.0 - q) * (1.0 - (0.0 if v < 0.0 else v) / u)
            p = p if p < 1.0 else 1.0
        else:
            p = q * math.exp(-(v - u) / self.m)
            p = P_FLOOR if p < P_FLOOR else p
        n = self.n = self.n + 1
        r = 1.0 / (n + self.prior)
        if r < self.rate:
            r = self.rate
        r2 = 1.0 / (n + self.prior2)
        if r2 < self.rate2:
            r2 = self.rate2
        q = q + r * ((1.0 if v > u else 0.0) - q)
        q2 = self.q2 + r2 * ((1.0 if v > self.u2 else 0.0) - self.q2)
        self.q = q if q > 1e-4 else 1e-4
        self.q2 = q2 if q2 > 1e-7 else 1e-7
        return p

    def _p_reference(self, v: float) -> float:
        """:meth:`p` as first written (the tests compare the two)."""
        if self.n < self.min_n:
            return 1.0
        if v <= self.u:
            return min(1.0, self.q + (1.0 - self.q) * (1.0 - max(v, 0.0) / self.u))
        return max(self.q * math.exp(-(v - self.u) / self.m), P_FLOOR)

    def learn(self, v: float) -> None:
        # the hot path (about ten calls a reading): plain comparisons, the same arithmetic
        n = self.n = self.n + 1
        r = 1.0 / (n + self.prior)
        if r < self.rate:
            r = self.rate
        r2 = 1.0 / (n + self.prior2)
        if r2 < self.rate2:
            r2 = self.rate2
        q = self.q + r * ((1.0 if v > self.u else 0.0) - self.q)
        q2 = self.q2 + r2 * ((1.0 if v > self.u2 else 0.0) - self.q2)
        self.q = q if q > 1e-4 else 1e-4
        self.q2 = q2 if q2 > 1e-7 else 1e-7

    def to_state(self) -> list[float]:
        return [self.u, self.u2, self.rate, self.rate2, self.q, self.q2, self.m_min, self.n,
                self.min_n, self.prior, self.prior2]  # fmt: skip

    @classmethod
    def from_state(cls, state: list[Any]) -> TailCalibrator:
        u, u2, rate, rate2, q, q2, m_min, n, min_n, prior, prior2 = state
        return cls(
            float(u), float(u2), float(rate), float(rate2), float(q), float(q2), float(m_min),
            int(n), int(min_n), int(prior), int(prior2),
        )  # fmt: skip
