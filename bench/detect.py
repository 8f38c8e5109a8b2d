"""Anomaly detection quality and throughput, on reproducible labelled synthetic sensor streams.

    .venv/bin/python bench/detect.py [--seeds 3] [--days 14]

Quality is scored the way an operator meets a detector (after the Numenta Anomaly Benchmark):
per-point scores become events (chainsense.ai.EventGate: an event opens when the score reaches
1.0 and closes after 12 normal points); an anomaly is a labelled window; the first event in a
window earns A_tp * sigmoid(position), from ~+1 at the window's start to 0 at its end; a window
with no event costs A_fn; an event outside every window costs A_fp. The sum is normalised to
100 = every window caught at its start, 0 = nothing detected. Three weightings (NAB's): balanced
(A_fp 0.11, A_fn 1), few false alarms (A_fp 0.22), few misses (A_fn 2). The first day of each
stream is the learning period and is not scored.

Throughput: points per second of each detector (score + filtered learn) in this one process (one
core), and of the whole per-reading path (chainsense.ai.monitor), against a reference measured
in the same run: secp256k1 public-key recovery (coincurve), the per-reading ceiling of ingest.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chainsense.ai import (
    EWMAZ,
    AnomalyFilter,
    EventGate,
    RollingMAD,
    SeasonalEWMA,
    SensorGuard,
)
from chainsense.ai.joint import JointGuard
from chainsense.ai.synthetic import KINDS, SENSORS, Stream, make_stream


class JointStream:
    """The default since issue 13: JointGuard on one metric. No AnomalyFilter (it learns every
    point, robustly); its alarms clear below half the alarm point (hysteresis)."""

    clear = 0.5

    def __init__(self) -> None:
        self.g = JointGuard(["x"])

    def process(self, x: float, t: int) -> float:
        return self.g.step({"x": x}, t).score


DETECTORS: dict[str, Callable[[], Any]] = {
    "rolling_mad (baseline)": RollingMAD,
    "ewma_z": EWMAZ,
    "seasonal_ewma": SeasonalEWMA,
    "sensor_guard (old default)": SensorGuard,
    "joint_guard (default)": JointStream,
}
PROFILES = {
    "balanced": (1.0, 0.11, 1.0),
    "few false alarms": (1.0, 0.22, 1.0),
    "few misses": (1.0, 0.11, 2.0),
}


@dataclass
class StreamResult:
    kind: str
    events: list[int]
    window: tuple[int, int]
    probation: int
    points: int


def sigmoid(rel: float) -> float:
    """NAB's scaled sigmoid: rel = -1 at the window start (~0.987), 0 at its end (0)."""
    return 2 / (1 + math.exp(5 * rel)) - 1


def _guarded(factory: Callable[[], Any]) -> Any:
    d = factory()
    return d if hasattr(d, "process") else AnomalyFilter(d)


def run(factory: Callable[[], Any], stream: Stream) -> StreamResult:
    guarded = _guarded(factory)
    gate = EventGate(clear=getattr(guarded, "clear", 1.0))
    events = []
    for i, (t, x) in enumerate(zip(stream.times, stream.values, strict=True)):
        if gate.update(guarded.process(x, t)):
            events.append(i)
    probation = 86_400_000 // stream.step_ms
    return StreamResult(stream.kind, events, stream.window, probation, len(stream.values))


def score(results: list[StreamResult], a_tp: float, a_fp: float, a_fn: float) -> float:
    total = perfect = null = 0.0
    for r in results:
        start, end = r.window
        inside = [e for e in r.events if start <= e < end]
        outside = [e for e in r.events if not start <= e < end and e >= r.probation]
        if inside:
            total += a_tp * sigmoid(-(end - inside[0]) / (end - start))
        else:
            total -= a_fn
        total -= a_fp * len(outside)
        perfect += a_tp
        null -= a_fn
    return 100 * (total - null) / (perfect - null)


def event_stats(results: list[StreamResult], step_min: float) -> dict[str, float]:
    true_events = false_events = caught = 0
    delays: list[float] = []
    days = 0.0
    for r in results:
        start, end = r.window
        inside = [e for e in r.events if start <= e < end]
        outside = [e for e in r.events if not start <= e < end and e >= r.probation]
        true_events += len(inside)
        false_events += len(outside)
        days += (r.points - r.probation) * step_min / 1440
        if inside:
            caught += 1
            delays.append((inside[0] - start) * step_min)
    precision = true_events / (true_events + false_events) if true_events + false_events else 0.0
    recall = caught / len(results)
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "delay_median_min": statistics.median(delays) if delays else float("nan"),
        "delay_mean_min": statistics.fmean(delays) if delays else float("nan"),
        "false_per_stream_day": false_events / days,
    }


def throughput(factory: Callable[[], Any], streams: list[Stream]) -> float:
    points = 0
    started = time.perf_counter()
    for stream in streams:
        process = _guarded(factory).process
        for t, x in zip(stream.times, stream.values, strict=True):
            process(x, t)
        points += len(stream.values)
    return points / (time.perf_counter() - started)


def recovery_reference(seconds: float = 1.0) -> float:
    """secp256k1 public-key recoveries per second (the ingest ceiling per reading)."""
    from coincurve import PrivateKey

    key = PrivateKey(b"\x01" * 32)
    digest = b"\x02" * 32
    signature = key.sign_recoverable(digest, hasher=None)
    from coincurve import PublicKey

    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            PublicKey.from_signature_and_message(signature, digest, hasher=None)
        n += 200
    return n / (time.perf_counter() - started)


def monitor_throughput(seconds: float = 2.0, devices_n: int = 50, warm: int = 500) -> float:
    """Readings per second through chainsense.ai.monitor (3 metrics each, ``devices_n``
    devices), in steady state: each device first sends ``warm`` readings, untimed, so that its
    learning periods (200 readings) and its commissioning baseline (400) are behind it."""
    from chainsense.ai.monitor import StreamMonitor, Thresholds
    from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

    machine = BUILTIN_SCHEMAS.by_name("chainsense.machine.v1")
    monitor = StreamMonitor(BUILTIN_SCHEMAS, Thresholds())
    devices = [f"0x{i:040x}" for i in range(devices_n)]
    n = 0
    t = 1_767_225_600_000
    for _ in range(warm):
        for device in devices:
            n += 1
            monitor.observe(
                reading_id=n, device=device, schema=machine.id, timestamp=t + n * 1000,
                values=(2000 + n % 7, 4500 + n % 5, 12000 + n % 11),
            )  # fmt: skip
    warmed = n
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for device in devices:
            n += 1
            monitor.observe(
                reading_id=n,
                device=device,
                schema=machine.id,
                timestamp=t + n * 1000,
                values=(2000 + n % 7, 4500 + n % 5, 12000 + n % 11),
            )
    return (n - warmed) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    streams = [
        make_stream(sensor, kind, seed=seed, days=args.days)
        for seed in range(args.seeds)
        for sensor in SENSORS
        for kind in KINDS
    ]
    step_min = streams[0].step_ms / 60_000
    total_points = sum(len(s.values) for s in streams)
    print(
        f"{len(streams)} streams ({len(SENSORS)} sensors x {len(KINDS)} kinds x {args.seeds} "
        f"seeds), {args.days} days at {step_min:g} min, {total_points:,} points\n"
    )
    header = (
        f"| detector | {' | '.join(PROFILES)} | precision | recall | F1 | "
        "delay median (min) | false alarms / stream-day |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    per_kind: dict[str, dict[str, float]] = {}
    all_results = {}
    for name, factory in DETECTORS.items():
        results = [run(factory, s) for s in streams]
        all_results[name] = results
        nab = [score(results, *weights) for weights in PROFILES.values()]
        stats = event_stats(results, step_min)
        print(
            f"| {name} | {' | '.join(f'{v:.1f}' for v in nab)} | {stats['precision']:.2f} | "
            f"{stats['recall']:.2f} | {stats['f1']:.2f} | {stats['delay_median_min']:.0f} | "
            f"{stats['false_per_stream_day']:.3f} |"
        )
        by_kind: dict[str, list[StreamResult]] = defaultdict(list)
        for r in results:
            by_kind[r.kind].append(r)
        per_kind[name] = {k: event_stats(v, step_min)["recall"] for k, v in by_kind.items()}
    print("\nrecall per anomaly kind\n")
    print(f"| detector | {' | '.join(KINDS)} |")
    print("|" + "---|" * (len(KINDS) + 1))
    for name, recalls in per_kind.items():
        print(f"| {name} | {' | '.join(f'{recalls[k]:.2f}' for k in KINDS)} |")

    print("\nthroughput on one core (score + filtered learn)\n")
    reference = recovery_reference()
    sample = streams[: len(SENSORS) * len(KINDS)]
    print(f"reference: secp256k1 recovery {reference:,.0f}/s (the ingest ceiling per reading)")
    print("| detector | points/s | ratio to recovery/s |")
    print("|---|---|---|")
    for name, factory in DETECTORS.items():
        rate = throughput(factory, sample)
        print(f"| {name} | {rate:,.0f} | {rate / reference:.2f} |")
    readings = monitor_throughput()
    print(
        f"\nmonitor (chainsense.machine.v1, 3 metrics, 50 devices past their learning periods): "
        f"{readings:,.0f} readings/s = {3 * readings:,.0f} points/s, "
        f"{readings / reference:.2f} x recovery/s"
    )


if __name__ == "__main__":
    main()
