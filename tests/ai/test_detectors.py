"""One check suite, run against every detector (STYLE.md #7)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from chainsense.ai import (
    EWMAZ,
    AnomalyFilter,
    DetectorStateError,
    EventGate,
    RollingMAD,
    SeasonalEWMA,
    SensorGuard,
    restore,
)
from chainsense.ai.synthetic import make_stream

FACTORIES: dict[str, Callable[[], Any]] = {
    "rolling_mad": RollingMAD,
    "ewma_z": EWMAZ,
    "seasonal_ewma": SeasonalEWMA,
    "sensor_guard": SensorGuard,
}

detectors = pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())


def _run(guarded: AnomalyFilter, times: list[int], values: list[float]) -> list[float]:
    return [guarded.process(x, t) for t, x in zip(times, values, strict=True)]


@detectors
def test_scores_of_a_prefix_do_not_change_when_more_data_follows(factory: Any) -> None:
    stream = make_stream("temperature", "level_shift", seed=7, days=8)
    cut = stream.window[0] + 5
    prefix = _run(AnomalyFilter(factory()), stream.times[:cut], stream.values[:cut])
    full = _run(AnomalyFilter(factory()), stream.times, stream.values)
    assert full[:cut] == prefix
    # and the scores do depend on the data: the detector is not constant
    assert len(set(full)) > 10


@detectors
def test_score_one_does_not_change_the_detector(factory: Any) -> None:
    detector = factory()
    stream = make_stream("humidity", "spike", seed=3, days=8)
    for t, x in zip(stream.times[:600], stream.values[:600], strict=True):
        detector.learn_one(x, t)
    before = json.dumps(detector.to_state())
    for t, x in zip(stream.times[600:700], stream.values[600:700], strict=True):
        detector.score_one(x, t)
    assert json.dumps(detector.to_state()) == before


@detectors
def test_state_round_trips_through_json_and_scores_continue_identically(factory: Any) -> None:
    stream = make_stream("vibration", "noise", seed=2, days=8)
    half = len(stream.values) // 2
    straight = AnomalyFilter(factory())
    expected = _run(straight, stream.times, stream.values)
    first = AnomalyFilter(factory())
    _run(first, stream.times[:half], stream.values[:half])
    saved = json.loads(json.dumps(first.to_state()))  # plain JSON, no pickle
    resumed = restore(saved)
    rest = _run(resumed, stream.times[half:], stream.values[half:])
    assert rest == expected[half:]


@detectors
def test_a_large_spike_after_a_calm_period_scores_as_anomalous(factory: Any) -> None:
    rng = random.Random(1)
    guarded = AnomalyFilter(factory())
    t0 = 1_767_225_600_000
    for i in range(300):
        guarded.process(20.0 + rng.gauss(0, 0.1), t0 + i * 60_000)
    t = t0 + 299 * 60_000 + 30_000  # in a time-of-day bin already seen
    assert guarded.score_one(20.05, t) < 1.0
    assert guarded.score_one(25.0, t) >= 1.0
    expected = guarded.expected(25.0, t)
    assert expected.low < 20.05 < expected.high
    assert not expected.low <= 25.0 <= expected.high


@detectors
def test_the_filter_keeps_an_anomaly_out_of_what_the_model_learns(factory: Any) -> None:
    rng = random.Random(2)
    t0 = 1_767_225_600_000
    points = [(t0 + i * 60_000, 20.0 + rng.gauss(0, 0.1)) for i in range(300)]
    guarded = AnomalyFilter(factory(), patience=5)
    for t, x in points:
        guarded.process(x, t)
    before = json.dumps(guarded.detector.to_state())
    guarded.process(500.0, t0 + 299 * 60_000 + 30_000)
    after = guarded.to_state()["detector"]
    # the detector only saw the point through see_one (run length, short noise), never learned it
    learned_fields = {k for k in ("n", "count", "mean", "level", "values") if k in after}
    assert learned_fields
    for field in learned_fields:
        assert json.loads(before)[field] == after[field]


def test_restore_refuses_unknown_state() -> None:
    with pytest.raises(DetectorStateError):
        restore({"kind": "nope"})
    with pytest.raises(DetectorStateError):
        restore({"kind": "ewma_z"})


def test_sensor_guard_names_the_check_that_fired() -> None:
    stream = make_stream("temperature", "stuck", seed=0, days=8)
    guarded = AnomalyFilter(SensorGuard())
    checks = set()
    for i, (t, x) in enumerate(zip(stream.times, stream.values, strict=True)):
        if stream.window[0] <= i < stream.window[1] and guarded.score_one(x, t) >= 1:
            checks.add(guarded.expected(x, t).check)
        guarded.process(x, t)
    assert "stuck" in checks


def test_event_gate_round_trips() -> None:
    gate = EventGate(cooldown=3)
    assert gate.update(2.0)
    other = EventGate(cooldown=3)
    other.load(gate.to_state())
    assert not other.update(2.0)
