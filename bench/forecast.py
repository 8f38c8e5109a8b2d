"""Demand forecast quality: MASE of day-ahead meter forecasts against seasonal-naive forecasts.

    .venv/bin/python bench/forecast.py

Synthetic household meters (chainsense.ai.synthetic.make_meter: 15-minute Wh, daily and weekly
pattern, AR(1) noise), 8 weeks each, 10 seeds. Every midnight of weeks 3-8 each method forecasts
the next 96 intervals from what it has seen so far. MASE = MAE / (in-sample MAE of the one-day
seasonal-naive forecast over weeks 1-2); below 1 beats that naive forecast.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chainsense.ai.forecast import SeasonalProfile
from chainsense.ai.synthetic import make_meter

PER_DAY = 96


def evaluate(seed: int) -> dict[str, float]:
    times, values = make_meter(seed=seed, days=56)
    train = 14 * PER_DAY
    scale = statistics.fmean(abs(values[i] - values[i - PER_DAY]) for i in range(PER_DAY, train))
    profile = SeasonalProfile(interval_ms=900_000)
    errors: dict[str, list[float]] = {"profile": [], "naive 1 day": [], "naive 1 week": []}
    for i, (t, x) in enumerate(zip(times, values, strict=True)):
        if i >= train and i % PER_DAY == 0:
            day = range(i, min(i + PER_DAY, len(values)))
            forecast = dict(profile.forecast(t, len(day)))
            for j in day:
                errors["profile"].append(abs(values[j] - forecast[times[j]]))
                errors["naive 1 day"].append(abs(values[j] - values[i - PER_DAY + (j - i)]))
                errors["naive 1 week"].append(abs(values[j] - values[j - 7 * PER_DAY]))
        profile.learn_one(x, t)
    return {name: statistics.fmean(e) / scale for name, e in errors.items()}


def main() -> None:
    runs = [evaluate(seed) for seed in range(10)]
    print("day-ahead MASE (scale: in-sample one-day seasonal naive), mean over 10 meters\n")
    print("| method | MASE |")
    print("|---|---|")
    for name in runs[0]:
        print(f"| {name} | {statistics.fmean(r[name] for r in runs):.3f} |")


if __name__ == "__main__":
    main()
