"""Demand forecasting for meters: the next intervals' energy, with daily and weekly patterns.

:class:`SeasonalProfile` keeps an exponentially weighted mean per slot of the week (e.g. 672
quarter-hours) and per slot of the day; a weekly slot not seen yet falls back to the daily one.
Values are per reading: it also tracks the mean time between readings (``period_ms``), so a total
over a span is the per-reading forecast times the readings expected in it (see
:func:`chainsense.settlement.agent.expected_energy`).
``bench/forecast.py`` scores it (MASE) against seasonal-naive forecasts.

>>> p = SeasonalProfile(interval_ms=3_600_000)
>>> for h in range(24 * 14):
...     p.learn_one(100.0 + (50.0 if h % 24 == 19 else 0.0), h * 3_600_000)
>>> [round(v) for _, v in p.forecast(24 * 14 * 3_600_000, 24)][18:21]
[100, 150, 100]
"""

from __future__ import annotations

from typing import Any

__all__ = ["SeasonalProfile"]

_DAY_MS = 86_400_000


class SeasonalProfile:
    """Per-slot means of one stream, weekly and daily (``alpha``: weight of the newest week)."""

    kind = "profile"

    def __init__(self, *, interval_ms: int = 900_000, alpha: float = 0.3) -> None:
        if _DAY_MS % interval_ms:
            raise ValueError("interval_ms must divide a day")
        self.interval_ms = interval_ms
        self.alpha = alpha
        per_day = _DAY_MS // interval_ms
        self.daily = [0.0] * per_day
        self.daily_n = [0] * per_day
        self.weekly = [0.0] * (7 * per_day)
        self.weekly_n = [0] * (7 * per_day)
        self.last_t: int | None = None
        self.period_ms: float | None = None  # mean time between readings (gaps capped at a slot)

    def _slots(self, t: int) -> tuple[int, int]:
        slot = (t % _DAY_MS) // self.interval_ms
        return slot, (t // _DAY_MS % 7) * len(self.daily) + slot

    def learn_one(self, x: float, t: int) -> None:
        if self.last_t is not None and t > self.last_t:
            gap = min(t - self.last_t, self.interval_ms)
            self.period_ms = (
                gap if self.period_ms is None else self.period_ms + 0.05 * (gap - self.period_ms)
            )
        d, w = self._slots(t)
        self.daily_n[d] += 1
        self.daily[d] += max(self.alpha, 1 / self.daily_n[d]) * (x - self.daily[d])
        self.weekly_n[w] += 1
        self.weekly[w] += max(self.alpha, 1 / self.weekly_n[w]) * (x - self.weekly[w])
        self.last_t = t

    def predict_one(self, t: int) -> float | None:
        d, w = self._slots(t)
        if self.weekly_n[w]:
            return self.weekly[w]
        return self.daily[d] if self.daily_n[d] else None

    def forecast(self, start_ms: int, intervals: int) -> list[tuple[int, float]]:
        """The next ``intervals`` slots from ``start_ms`` (rounded down to a slot)."""
        first = start_ms - start_ms % self.interval_ms
        out = []
        for i in range(intervals):
            t = first + i * self.interval_ms
            value = self.predict_one(t)
            if value is not None:
                out.append((t, value))
        return out

    def to_state(self) -> dict[str, Any]:
        keys = ("kind", "interval_ms", "alpha", "daily", "daily_n", "weekly", "weekly_n", "last_t",
                "period_ms")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeasonalProfile:
        p = cls(interval_ms=state["interval_ms"], alpha=state["alpha"])
        for k in ("daily", "daily_n", "weekly", "weekly_n", "last_t"):
            setattr(p, k, state[k])
        p.period_ms = state.get("period_ms")  # absent in states saved before it was tracked
        return p
