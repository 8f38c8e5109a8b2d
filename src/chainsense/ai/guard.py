"""SensorGuard: the default detector (see :mod:`chainsense.ai.detectors` for the others).

It is :class:`~chainsense.ai.detectors.SeasonalEWMA` plus three checks, each scaled so that 1.0
is its alarm point; the score is the largest, and :meth:`SensorGuard.expected` names it:

- ``level``: the residual against level + time-of-day season, in ``k`` robust sigmas (spikes,
  level shifts, a broken daily pattern);
- ``drift``: the deseasonalised level against a slow reference of itself (time constant
  ``1/ref_alpha`` points), in ``drift_k`` sigmas (slow drifts the level would otherwise follow);
- ``stuck``: a run of identical values, against the chance of such a run given how often this
  stream repeats a value at this time of day (a night-time zero export of a meter is normal);
- ``noise``: a short exponentially weighted mean of |residual| in sigmas (noise bursts).

>>> guard = SensorGuard(warmup=5)
>>> for i in range(50):
...     guard.learn_one(20.0 + (i % 3) * 0.1, i * 60_000)
>>> guard.score_one(20.1, 50 * 60_000) < 1 <= guard.score_one(35.0, 50 * 60_000)
True
>>> guard.expected(35.0, 50 * 60_000).check
'level'

The run and the short noise mean must see anomalous points too, which the
:class:`~chainsense.ai.base.AnomalyFilter` keeps from ``learn_one``: it calls ``see_one`` for them.
"""

from __future__ import annotations

import math
from typing import ClassVar

from chainsense.ai.base import Expected, register
from chainsense.ai.detectors import _MEAN_ABS_TO_SIGMA, SeasonalEWMA

__all__ = ["SensorGuard"]


@register
class SensorGuard(SeasonalEWMA):
    """Seasonal residual + drift + stuck + noise checks. See the module docstring."""

    kind: ClassVar[str] = "sensor_guard"
    _FIELDS: ClassVar[tuple[str, ...]] = (
        *SeasonalEWMA._FIELDS,
        "drift_k", "ref_alpha", "stuck_odds", "stuck_min", "noise_alpha", "noise_k",
        "ref", "bin_repeat", "last", "run", "noise",
    )  # fmt: skip

    def __init__(
        self,
        *,
        bins: int = 48,
        alpha: float = 0.01,
        gamma: float = 0.1,
        beta: float = 0.02,
        k: float = 5.0,
        warmup: int = 24,
        drift_k: float = 4.0,
        ref_alpha: float = 0.001,
        stuck_odds: float = 1e-9,
        stuck_min: int = 6,
        noise_alpha: float = 0.1,
        noise_k: float = 3.0,
    ) -> None:
        super().__init__(bins=bins, alpha=alpha, gamma=gamma, beta=beta, k=k, warmup=warmup)
        self.drift_k = drift_k
        self.ref_alpha = ref_alpha
        self.stuck_odds = stuck_odds
        self.stuck_min = stuck_min
        self.noise_alpha = noise_alpha
        self.noise_k = noise_k
        self.ref = 0.0
        self.bin_repeat = [0.0] * bins
        self.last: float | None = None
        self.run = 0
        self.noise = 0.8  # E|z| of normal noise

    def _checks(self, x: float, t: int) -> tuple[float, float, float, float, int, float]:
        """(level, drift, stuck, noise) scores, and the bin and sigma they used."""
        b = self._bin(t)
        predicted, sigma = self._predict(t, b)
        z = abs(x - predicted) / sigma
        level = z / self.k
        a = max(self.alpha, 1.0 / (self.n + 1))
        tentative = self.level + a * (x - self.season[b] - self.level)
        overall = max(_MEAN_ABS_TO_SIGMA * self.scale, sigma * 0.25)
        drift = abs(tentative - self.ref) / (self.drift_k * overall)
        run = self.run + 1 if x == self.last else 0
        stuck = 0.0
        if run >= self.stuck_min:
            p = min(max(self.bin_repeat[b], 1e-3), 0.999)
            stuck = run * math.log(1 / p) / math.log(1 / self.stuck_odds)
        noise = (self.noise + self.noise_alpha * (min(z, 10.0) - self.noise)) / self.noise_k
        return level, drift, stuck, noise, b, z

    def score_one(self, x: float, t: int) -> float:
        if not self._ready(self._bin(t)):
            return 0.0
        level, drift, stuck, noise, _, _ = self._checks(x, t)
        return max(level, drift, stuck, noise)

    def see_one(self, x: float, t: int) -> None:
        """Update the run length and the short noise mean (also for anomalous points)."""
        if self.n == 0:
            self.last = x
            return
        b = self._bin(t)
        predicted, sigma = self._predict(t, b)
        if self._ready(b):
            z = abs(x - predicted) / sigma
            self.noise += self.noise_alpha * (min(z, 10.0) - self.noise)
        self.run = self.run + 1 if x == self.last else 0
        self.last = x

    def learn_one(self, x: float, t: int) -> None:
        b = self._bin(t)
        repeated = 1.0 if x == self.last else 0.0
        self.see_one(x, t)
        seen = self.bin_n[b]
        super().learn_one(x, t)
        if self.n == 1:
            self.ref = self.level
        else:
            self.ref += max(self.ref_alpha, 1.0 / self.n) * (self.level - self.ref)
        if seen or self.n > 1:
            g = max(0.05, 1.0 / (seen + 1))
            self.bin_repeat[b] += g * (repeated - self.bin_repeat[b])

    def expected(self, x: float, t: int) -> Expected:
        predicted, sigma = self._predict(t, self._bin(t))
        low, high = predicted - self.k * sigma, predicted + self.k * sigma
        if not self._ready(self._bin(t)):
            return Expected(predicted, low, high)
        level, drift, stuck, noise, _, _ = self._checks(x, t)
        check = max(
            (level, "level"),
            (drift, "drift"),
            (stuck, "stuck"),
            (noise, "noise"),
            key=lambda c: c[0],
        )[1]
        return Expected(predicted, low, high, check)
