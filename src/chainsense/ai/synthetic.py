"""Reproducible synthetic IoT sensor streams with labelled anomaly windows.

Used by ``bench/detect.py`` (evaluation) and the tests. Every stream is built from a seed alone
(``random.Random(seed)``), so the same call gives the same points on every machine.

Sensors (5-minute sampling by default): a cold-chain temperature, a humidity, a machine's
vibration and an electricity meter's import (daily and weekly pattern). Each has AR(1) noise and
is quantised to its schema's resolution, as real fixed-point readings are. Two more have the
shapes real fleets send and the four above lack (:data:`REAL_WORLD`):

- ``water``: a household's water draw in litres per interval, zero most of the time (draws come
  in bursts, more in the morning and evening), quantised to 1 L;
- ``energy``: an electricity meter's cumulative register (Wh, a counter), read at irregular
  times (each reading up to 40% of a step early or late, 5% of readings lost), as battery
  meters on a lossy radio send it.

One anomaly of one kind is injected after a clean learning period:

- ``spike``: one or two points far off;
- ``level_shift``: the level jumps and stays;
- ``drift``: the level ramps away over a day;
- ``stuck``: the sensor repeats its last value for hours;
- ``noise``: the noise grows several-fold for two hours;
- ``pattern``: the daily pattern is broken for a day (shifted by half a day).

On ``water`` a level shift is a leak (a constant flow added), a drift a leak that grows over a
day, a spike a burst of 60-120 L, and ``stuck`` repeats the last non-zero draw; on ``energy``
the anomaly is in the consumption the register adds up (``stuck``: the register stops).

>>> s = make_stream("temperature", "spike", seed=1, days=8)
>>> len(s.values), s.kind, s.window[1] - s.window[0]
(2304, 'spike', 12)
>>> s.values == make_stream("temperature", "spike", seed=1, days=8).values
True
>>> w = make_stream("water", "level_shift", seed=1)
>>> sum(v == 0 for v in w.values[: w.window[0]]) / w.window[0] > 0.8, w.resolution
(True, 1.0)
>>> e = make_stream("energy", "stuck", seed=1)
>>> gaps = {b - a for a, b in zip(e.times, e.times[1:])}
>>> e.counter, all(b >= a for a, b in zip(e.values, e.values[1:])), len(gaps) > 100
(True, True, True)
>>> start, end = e.window
>>> e.values[start + 2] == e.values[end - 2]   # the register stopped
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["KINDS", "REAL_WORLD", "SENSORS", "Stream", "make_meter", "make_stream"]

KINDS = ("spike", "level_shift", "drift", "stuck", "noise", "pattern")
SENSORS = ("temperature", "humidity", "vibration", "meter")
REAL_WORLD = ("water", "energy")
"""Zero-heavy (``water``) and a counter read at irregular times (``energy``)."""
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Stream:
    sensor: str
    kind: str
    step_ms: int
    times: list[int]
    values: list[float]
    window: tuple[int, int]
    """Indices [start, end) of the labelled anomaly."""
    resolution: float = 0.0
    """The smallest step of the values (a schema's fixed-point step)."""
    counter: bool = False
    """The values are a cumulative counter."""


def _profile(sensor: str, t_ms: int) -> tuple[float, float, float]:
    """(expected value, noise sigma, resolution) of a sensor at a time."""
    hour = (t_ms % _DAY_MS) / 3_600_000
    weekday = (t_ms // _DAY_MS + 3) % 7  # 0 = Monday
    day = math.sin(2 * math.pi * (hour - 9) / 24)
    if sensor == "temperature":
        return 4.0 + 0.6 * day, 0.08, 0.01
    if sensor == "humidity":
        return 60.0 - 6.0 * day, 0.6, 0.1
    if sensor == "vibration":
        working = 1.0 if 6 <= hour < 22 and weekday < 6 else 0.0
        return 1.2 + 0.8 * working, 0.05, 0.001
    if sensor == "meter":
        return _meter_mean(t_ms), 0.0, 1.0
    raise ValueError(f"unknown sensor {sensor!r}")


def _meter_mean(t_ms: int) -> float:
    """Wh per 15 minutes of a household: night base, morning and evening peaks, busier weekend."""
    hour = (t_ms % _DAY_MS) / 3_600_000
    weekday = (t_ms // _DAY_MS + 3) % 7
    weekend = weekday >= 5
    morning = math.exp(-(((hour - (9.5 if weekend else 7.5)) / 1.2) ** 2))
    evening = math.exp(-(((hour - 19.0) / 2.0) ** 2))
    return 60.0 + (160.0 if weekend else 110.0) * morning + 220.0 * evening + (40 if weekend else 0)


def make_meter(
    *, seed: int, days: int = 56, step_ms: int = 900_000
) -> tuple[list[int], list[float]]:
    """A clean meter import series (Wh per interval) with daily and weekly seasonality."""
    rng = random.Random(seed)
    times = [START_MS + i * step_ms for i in range(days * _DAY_MS // step_ms)]
    values: list[float] = []
    ar = 0.0
    for t in times:
        mean = _meter_mean(t) * step_ms / 900_000
        ar = 0.6 * ar + rng.gauss(0, 0.08)
        values.append(float(max(0, round(mean * (1 + ar)))))
    return times, values


def _length(kind: str, per_day: int) -> int:
    """How many points an anomaly of ``kind`` lasts."""
    return {
        "spike": 12, "level_shift": 36, "drift": per_day, "stuck": 36, "noise": 24,
        "pattern": per_day,
    }[kind]  # fmt: skip


def _injected(
    kind: str, i: int, start: int, length: int, spike_at: set[int], spike: float, shift: float,
    sigma: float,
) -> float:  # fmt: skip
    """What a spike, a level shift or a drift adds to point ``i``."""
    if kind == "spike" and i in spike_at:
        return spike
    if kind == "level_shift" and i >= start:
        return shift
    if kind == "drift" and i >= start:
        return math.copysign(min(i - start, length) / length * 6 * sigma, shift)
    return 0.0


def make_stream(
    sensor: str,
    kind: str,
    *,
    seed: int,
    days: int = 14,
    step_ms: int = 300_000,
    clean_days: int = 4,
) -> Stream:
    """One sensor stream with one anomaly of ``kind`` after ``clean_days``."""
    if sensor in REAL_WORLD:
        return _real_world(
            sensor, kind, seed=seed, days=days, step_ms=step_ms, clean_days=clean_days
        )
    rng = random.Random(f"{sensor}/{kind}/{seed}")
    n = days * _DAY_MS // step_ms
    per_day = _DAY_MS // step_ms
    times = [START_MS + i * step_ms for i in range(n)]
    lows = clean_days * per_day
    start = rng.randrange(lows, n - 2 * per_day)
    noise_sigma = {"temperature": 0.08, "humidity": 0.6, "vibration": 0.05, "meter": 0.0}[sensor]
    sigma = noise_sigma or 25.0
    length = _length(kind, per_day)
    end = start + length
    shift = rng.choice((-1, 1)) * rng.uniform(4, 8) * sigma
    spike_at = {start, start + 1} if rng.random() < 0.3 else {start}
    spike = rng.choice((-1, 1)) * rng.uniform(6, 12) * sigma
    values: list[float] = []
    ar = 0.0
    for i, t in enumerate(times):
        shown_t = t + _DAY_MS // 2 if kind == "pattern" and start <= i < end else t
        mean, noise, resolution = _profile(sensor, shown_t)
        scale = rng.uniform(4, 6) if kind == "noise" and start <= i < end else 1.0
        if sensor == "meter":
            ar = 0.6 * ar + rng.gauss(0, 0.08 * scale)
            value = mean * (1 + ar)
        else:
            ar = 0.7 * ar + rng.gauss(0, noise * math.sqrt(1 - 0.49) * scale)
            value = mean + ar
        value += _injected(kind, i, start, length, spike_at, spike, shift, sigma)
        if kind == "stuck" and start <= i < end:
            value = values[start - 1]
        else:
            value = round(value / resolution) * resolution
            if sensor == "meter":
                value = max(0.0, value)
        values.append(value)
    resolution = _profile(sensor, START_MS)[2]
    return Stream(sensor, kind, step_ms, times, values, (start, end), resolution)


def _draw_chance(t_ms: int) -> float:
    """The chance of a water draw in an interval at a time of day."""
    hour = (t_ms % _DAY_MS) / 3_600_000
    if 6 <= hour < 9 or 18 <= hour < 22:
        return 0.3
    return 0.1 if 9 <= hour < 18 else 0.02


def _real_world(
    sensor: str, kind: str, *, seed: int, days: int, step_ms: int, clean_days: int
) -> Stream:
    rng = random.Random(f"{sensor}/{kind}/{seed}")
    n = days * _DAY_MS // step_ms
    per_day = _DAY_MS // step_ms
    start = rng.randrange(clean_days * per_day, n - 2 * per_day)
    length = _length(kind, per_day)
    end = start + length
    grid = [START_MS + i * step_ms for i in range(n)]
    # what happens in each interval: litres drawn, or Wh consumed
    amounts: list[float] = []
    ar = 0.0
    sigma = 1.0 if sensor == "water" else 25.0 * step_ms / 900_000
    shift = rng.uniform(4, 8) * sigma * (1 if sensor == "water" else rng.choice((-1, 1)))
    spike_at = {start, start + 1} if rng.random() < 0.3 else {start}
    spike = rng.uniform(60, 120) if sensor == "water" else rng.uniform(6, 12) * sigma
    for i, t in enumerate(grid):
        inside = start <= i < end
        shown_t = t + _DAY_MS // 2 if kind == "pattern" and inside else t
        scale = rng.uniform(4, 6) if kind == "noise" and inside else 1.0
        if sensor == "water":
            drawn = rng.random() < _draw_chance(shown_t)
            value = rng.gammavariate(2.0, 6.0 * scale) if drawn else 0.0
        else:
            ar = 0.6 * ar + rng.gauss(0, 0.08 * scale)
            value = _meter_mean(shown_t) * step_ms / 900_000 * (1 + ar)
        value += _injected(kind, i, start, length, spike_at, spike, shift, sigma)
        value = max(0.0, value)
        if kind == "stuck" and inside:
            # water: the last non-zero draw, repeated; energy: the register stops
            last_draw = next((v for v in reversed(amounts) if v > 0), 1.0)
            value = last_draw if sensor == "water" else 0.0
        amounts.append(float(round(value)) if sensor == "water" else value)
    if sensor == "water":
        return Stream(sensor, kind, step_ms, grid, amounts, (start, end), 1.0)
    # the register, read at irregular times: each reading up to 40% of a step early or late
    # (the register as it stood then), 5% of them lost
    register = float(rng.randrange(1_000_000, 9_000_000))
    totals = []
    for a in amounts:
        totals.append(register)
        register += a
    times: list[int] = []
    values: list[float] = []
    for i, t in enumerate(grid):
        if i and rng.random() < 0.05:
            continue
        u = rng.uniform(-0.4, 0.4) if i else 0.0
        k, into = (i, u) if u >= 0 else (i - 1, 1.0 + u)  # the interval the reading falls in
        values.append(float(math.floor(totals[k] + into * amounts[k])))
        times.append(t + int(u * step_ms))
    # a reading tells what was used since the one before it: it is labelled when that span
    # overlaps the anomaly's [grid[start], grid[end])
    onset, over = grid[start], grid[end] if end < n else grid[-1] + step_ms
    first = next((j for j in range(1, len(times)) if times[j] > onset), len(times))
    last = next((j for j in range(first, len(times)) if times[j - 1] >= over), len(times))
    window = (first, last)
    return Stream(sensor, kind, step_ms, times, values, window, 1.0, counter=True)
