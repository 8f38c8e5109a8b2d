"""Anomaly detection on SKAB (a real pump testbed), scored as SKAB and NAB publish it.

    .venv/bin/python bench/skab.py [--dev-only] [--only NAME]

Data: ``CHAINSENSE_SKAB_DIR`` (default ``../shared/datasets/skab`` or ``../../shared/datasets/skab``
relative to the repository); never copied into the project. The development/test split was
declared before any tuning in ``bench/skab_split.json``; parameters were chosen on development.

Each file is a fresh run: every detector starts empty and sees the rows in order (causal,
online). The default (as the worker runs it for a machine schema) and "baseline model alone"
use SKAB's convention that a run's first rows are normal: their commissioning baseline learns
the first 400 rows (scored meanwhile by the per-metric models only, or not at all), then judges
the rest; those rows are still scored and counted like every other. Per row a detector gives a
raw score and, where it has one, its fixed alarm decision. Rows become alarms as a user meets
them: ``chainsense.ai.EventGate`` opens an alarm at the first row past the threshold and closes
it after 12 quiet rows.

- Outlier problem (SKAB's ``anomaly`` column): a row is predicted anomalous while an alarm is
  open; point-wise F1 / FAR / MAR over all rows of the split.
- Changepoint problem (``changepoint``): the events the worker reports are the detections (an
  alarm's opening, and each change point the default's change detector finds, which opens an
  alarm or is reported within the open one); NAB scores with a 60 s window to the right of
  each changepoint (standard / low FP / low FN).
- ``fixed``: the product's alarm point (what users get). ``opt``: the threshold that maximises
  the development split's F1 (outlier) or NAB standard (changepoint), then applied unchanged
  to the test split.
- Anomaly-free: the anomaly-free run's half of the split; alarm openings ("free alarms") and
  all events (openings and change points, "free events") at the fixed point, against what the
  configured false-alarm rate allows (1 a week per device: ~0.008 in 1.4 h).

Throughput: the default detector's points per second in this process against secp256k1
public-key recovery (the ingest ceiling) measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _baselines import half_space_trees, rolling_z  # noqa: E402
from _scoring import PROFILES, f1_far_mar, nab_normalised, nab_raw  # noqa: E402
from chainsense.ai import AnomalyFilter, EventGate, SensorGuard  # noqa: E402
from chainsense.ai.baseline import BaselineModel  # noqa: E402
from chainsense.ai.calibrate import WEEK_MS, alarm_probability  # noqa: E402
from chainsense.ai.joint import JointGuard  # noqa: E402

COLUMNS = (
    "Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
    "Thermocouple", "Voltage", "Volume Flow RateRMS",
)  # fmt: skip
COOLDOWN = 12
CLEAR = 0.5
CP_WINDOW_MS = 60_000


def skab_dir() -> Path:
    env = os.environ.get("CHAINSENSE_SKAB_DIR")
    candidates = (
        [Path(env)]
        if env
        else [ROOT.parent / "shared/datasets/skab", ROOT.parents[1] / "shared/datasets/skab"]
    )
    for c in candidates:
        if (c / "data").is_dir():
            return c / "data"
    tried = ", ".join(map(str, candidates))
    print(f"skipped: SKAB not found (tried {tried}); set CHAINSENSE_SKAB_DIR")
    raise SystemExit(0)


@dataclass
class Run:
    name: str
    times: list[int]
    rows: list[list[float]]
    anomaly: list[int]
    changepoint: list[int]


def load(path: Path, name: str, part: slice = slice(None)) -> Run:
    times, rows, anomaly, cps = [], [], [], []
    with path.open() as f:
        reader = csv.DictReader(f, delimiter=";")
        for rec in reader:
            stamp = dt.datetime.strptime(rec["datetime"], "%Y-%m-%d %H:%M:%S")
            times.append(int(stamp.replace(tzinfo=dt.UTC).timestamp() * 1000))
            rows.append([float(rec[c]) for c in COLUMNS])
            anomaly.append(int(float(rec.get("anomaly") or 0)))
            cps.append(int(float(rec.get("changepoint") or 0)))
    return Run(name, times[part], rows[part], anomaly[part], cps[part])


def load_split(which: str) -> tuple[list[Run], Run]:
    split = json.loads((ROOT / "bench/skab_split.json").read_text())
    base = skab_dir()
    runs = [load(base / name, name) for name in split[which]]
    free = load(base / split["anomaly_free"]["file"], "anomaly-free")
    half = len(free.times) // 2
    part = slice(None, half) if which == "development" else slice(half, None)
    return runs, load(base / split["anomaly_free"]["file"], f"anomaly-free ({which})", part)


# --- detectors: per file, step(row, t) -> raw score; ``fixed``: the raw score of the product's
# alarm point where the detector has one, else None -----------------------------------------


class Guard:
    """The product's default: JointGuard over the 8 metrics, as the worker runs it for a machine
    schema (with the commissioning baseline)."""

    name = "joint_guard (default)"

    def __init__(self, **options: Any) -> None:
        self.g = JointGuard(COLUMNS, options=options, baseline={})
        self.fixed: float | None = None
        self.changed = False

    def step(self, row: list[float], t: int) -> float:
        r = self.g.step(dict(zip(COLUMNS, row, strict=True)), t)
        self.changed = r.change  # a change point: the monitor reports it as an event at once
        # raw = -log10 p; the product alarms at score 1.0, i.e. p = p_alarm
        self.fixed = -math.log10(self.g.p_alarm())
        return -math.log10(max(r.p, 1e-300))


class NoChange(Guard):
    """The previous default: the same guard with its change points ignored (alarms only)."""

    name = "joint_guard, no change points (prev)"

    def step(self, row: list[float], t: int) -> float:
        raw = super().step(row, t)
        self.changed = False
        return raw


class PerMetric(Guard):
    """The default before the baseline model: JointGuard's per-metric models only."""

    name = "joint_guard, no baseline"

    def __init__(self) -> None:
        self.g = JointGuard(COLUMNS)
        self.fixed = None
        self.changed = False


class Baseline:
    """The commissioning-baseline model alone (MEWMA T2 against the first 400 rows), scored as
    JointGuard scores it: ``-log10 p`` against the alarm point of 1 false alarm a week at 1 Hz."""

    name = "baseline model alone"

    def __init__(self) -> None:
        self.m = BaselineModel(COLUMNS)
        self.fixed = -math.log10(alarm_probability(1.0, 1000.0))

    def step(self, row: list[float], t: int) -> float:
        r = self.m.step(dict(zip(COLUMNS, row, strict=True)), t)
        return -math.log10(max(r.p, 1e-300))


class OldGuard:
    """The earlier default: a filtered SensorGuard per metric, the largest score."""

    name = "sensor_guard (old default)"

    fixed = 1.0

    def __init__(self) -> None:
        self.g = [AnomalyFilter(SensorGuard()) for _ in COLUMNS]

    def step(self, row: list[float], t: int) -> float:
        return min(max(g.process(x, t) for g, x in zip(self.g, row, strict=True)), 1e6)


class RollingZ:
    """Rolling z-score over the last 100 rows, the largest |z| over metrics; fixed point 3."""

    name = "rolling z-score (100)"
    fixed = 3.0

    def __init__(self, window: int = 100) -> None:
        from collections import deque

        self.window = window
        self.buf: list[Any] = [deque() for _ in COLUMNS]

    def step(self, row: list[float], t: int) -> float:
        best = 0.0
        for buf, x in zip(self.buf, row, strict=True):
            best = max(best, rolling_z(buf, x))
            buf.append(x)
            if len(buf) > self.window:
                buf.popleft()
        return min(best, 1e6)


class River:
    """A river anomaly detector over the 8 metrics (score_one, then learn_one)."""

    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name = name
        self.model = make()
        self.fixed: float | None = None

    def step(self, row: list[float], t: int) -> float:
        x = dict(zip(COLUMNS, row, strict=True))
        s = float(self.model.score_one(x))
        self.model.learn_one(x)
        return s


def river_detectors() -> dict[str, Callable[[], Any]]:
    from river import anomaly, preprocessing

    return {
        "river HalfSpaceTrees": lambda: River("river HalfSpaceTrees", half_space_trees),
        "river OneClassSVM": lambda: River(
            "river OneClassSVM",
            lambda: preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.2),
        ),
    }


def detectors() -> dict[str, Callable[[], Any]]:
    return {
        Guard.name: Guard,
        NoChange.name: NoChange,
        PerMetric.name: PerMetric,
        Baseline.name: Baseline,
        OldGuard.name: OldGuard,
        RollingZ.name: RollingZ,
        **river_detectors(),
    }


# --- scoring -------------------------------------------------------------------------------


@dataclass
class Scored:
    run: Run
    raw: list[float]
    fixed: float | None  # the product's alarm point on the raw scale
    changes: frozenset[int] = frozenset()  # rows the detector called change points


def score_runs(factory: Callable[[], Any], runs: Sequence[Run]) -> list[Scored]:
    out = []
    for run in runs:
        d = factory()
        raw, changes = [], set()
        for i, (row, t) in enumerate(zip(run.rows, run.times, strict=True)):
            raw.append(d.step(row, t))
            if getattr(d, "changed", False):
                changes.add(i)
        out.append(Scored(run, raw, d.fixed, frozenset(changes)))
    return out


def gate(
    raw: Sequence[float], thr: float, changes: frozenset[int] = frozenset()
) -> tuple[list[int], list[int], list[int]]:
    """(open state per row, indices of alarm openings, indices of events) as the worker's
    ``StreamMonitor`` makes them with the product's EventGate: an alarm opens at ``thr`` and
    clears after 12 rows below ``CLEAR * thr``; a change point is reported within an open alarm,
    or opens one at once on a suspicious row (raw score at least ``CLEAR * thr``). Events: every
    opening and every change point reported."""
    g = EventGate(threshold=thr, cooldown=COOLDOWN, clear=CLEAR)
    state, opens, events = [], [], []
    for i, v in enumerate(raw):
        change = i in changes and (g.open or v >= CLEAR * thr)
        if g.update(max(v, thr) if change else v):
            opens.append(i)
            events.append(i)
        elif change:
            events.append(i)
        state.append(1 if g.open else 0)
    return state, opens, events


def _threshold(scored: Scored, thr: float | None) -> float:
    """``thr``, or the detector's fixed alarm point when ``thr`` is None."""
    if thr is not None:
        return thr
    if scored.fixed is None:
        raise ValueError("this detector has no fixed alarm point: pass a threshold")
    return scored.fixed


def evaluate(scored: Sequence[Scored], thr: float | None) -> dict[str, float]:
    """Both problems' figures at raw threshold ``thr`` (None: each detector's fixed point)."""
    pred: list[int] = []
    labels: list[int] = []
    raws = dict.fromkeys(PROFILES, 0.0)
    windows = 0
    for s in scored:
        state, _, events = gate(s.raw, _threshold(s, thr), s.changes)
        pred += state
        labels += s.run.anomaly
        ws = [
            (t, t + CP_WINDOW_MS) for t, c in zip(s.run.times, s.run.changepoint, strict=True) if c
        ]
        windows += len(ws)
        dets = [s.run.times[i] for i in events]
        for name, (a_tp, a_fp, a_fn) in PROFILES.items():
            raws[name] += nab_raw(dets, ws, a_tp, a_fp, a_fn)
    f1, far, mar = f1_far_mar(pred, labels)
    result = {"f1": f1, "far": far, "mar": mar}
    for name, (a_tp, _, a_fn) in PROFILES.items():
        result[name] = nab_normalised(raws[name], windows, a_tp, a_fn)
    return result


def alarms(scored: Scored, thr: float | None) -> tuple[int, int]:
    """(alarm openings, events: openings and change points)."""
    _, opens, events = gate(scored.raw, _threshold(scored, thr), scored.changes)
    return len(opens), len(events)


def candidates(scored: Sequence[Scored]) -> list[float]:
    values = sorted(v for s in scored for v in s.raw)
    qs = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995]
    return sorted({values[min(len(values) - 1, int(q * len(values)))] for q in qs})


def best_threshold(scored: Sequence[Scored], key: str) -> float:
    best, best_thr = -math.inf, math.inf
    for thr in candidates(scored):
        r = evaluate(scored, thr)
        if r[key] > best:
            best, best_thr = r[key], thr
    return best_thr


def recovery_reference(seconds: float = 1.0) -> float:
    from coincurve import PrivateKey, PublicKey

    key = PrivateKey(b"\x01" * 32)
    msg = b"\x02" * 32
    sig = key.sign_recoverable(msg, hasher=None)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            PublicKey.from_signature_and_message(sig, msg, hasher=None)
        n += 500
    return n / (time.perf_counter() - start)


def throughput(runs: Sequence[Run]) -> float:
    start = time.perf_counter()
    points = 0
    for run in runs:
        g = Guard()
        for row, t in zip(run.rows, run.times, strict=True):
            g.step(row, t)
        points += len(row) * len(run.rows)
    return points / (time.perf_counter() - start)


def fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None, help="run only detectors whose name contains this")
    parser.add_argument("--dev-only", action="store_true", help="development split only (tuning)")
    args = parser.parse_args()
    dev, dev_free = load_split("development")
    test, test_free = (dev, dev_free) if args.dev_only else load_split("test")
    hours = (test_free.times[-1] - test_free.times[0]) / 3_600_000
    allowed = 1.0 * (test_free.times[-1] - test_free.times[0]) / WEEK_MS
    print(
        f"SKAB: development {len(dev)} files, test {len(test)} files; anomaly-free halves "
        f"{hours:.1f} h each (1 false alarm/week allows {allowed:.3f})"
    )
    header = (
        f"{'detector':28} {'split':5} {'thr':5} {'F1':>5} {'FAR':>6} {'MAR':>6} "
        f"{'NAB std':>7} {'lowFP':>6} {'lowFN':>6} {'free alarms':>11} {'free events':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, factory in detectors().items():
        if args.only and args.only not in name:
            continue
        sd = score_runs(factory, dev)
        fd = score_runs(factory, [dev_free])[0]
        st, ft = (
            (sd, fd)
            if args.dev_only
            else (score_runs(factory, test), score_runs(factory, [test_free])[0])
        )
        thr_f1 = best_threshold(sd, "f1")
        thr_nab = best_threshold(sd, "standard")
        splits = [("dev", sd, fd)] + ([] if args.dev_only else [("test", st, ft)])
        for split, scored, free in splits:
            rows = []
            if free.fixed is not None:
                r = evaluate(scored, None)
                rows.append(("fixed", r, alarms(free, None)))
            r1 = evaluate(scored, thr_f1)
            r2 = evaluate(scored, thr_nab)
            r = {**r1, **{k: r2[k] for k in PROFILES}}
            rows.append(("opt", r, alarms(free, thr_f1)))
            for thr, r, (n_free, n_events) in rows:
                print(
                    f"{name:28} {split:5} {thr:5} {fmt(r['f1']):>5} {fmt(r['far'], True):>6} "
                    f"{fmt(r['mar'], True):>6} {r['standard']:7.1f} {r['low_fp']:6.1f} "
                    f"{r['low_fn']:6.1f} {n_free:11d} {n_events:11d}"
                )
        sys.stdout.flush()
    ref = recovery_reference()
    rate = throughput(test[:3])
    print(
        f"\nthroughput (one core, this process): joint_guard {rate:,.0f} points/s; secp256k1 "
        f"recovery {ref:,.0f}/s; ratio {rate / ref:.2f} points per recovered signature"
    )


if __name__ == "__main__":
    main()
