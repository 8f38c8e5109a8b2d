"""JointGuard and RobustStream on real-world-shaped streams: quantised, zero-heavy, counters, flat
lines, spikes, irregular sampling, regime changes; causality, the JSON state round trip, hard
limits, the responsible metric, and sensitivity as a false-alarm rate."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator

import pytest

from chainsense.ai.base import EventGate
from chainsense.ai.calibrate import SCORE_CAP, TailCalibrator, alarm_probability, score
from chainsense.ai.joint import JointGuard
from chainsense.ai.robust import LEVEL_FAR_PRIOR, RobustStream
from chainsense.ai.synthetic import KINDS, REAL_WORLD, make_stream

HOUR = 3_600_000


def alarms(
    values: list[float], times: list[int] | None = None, **kw: object
) -> tuple[list[int], list[float]]:
    """Indices where an alarm opens (the product's gate) and every score."""
    g = JointGuard(["x"], **kw)  # type: ignore[arg-type]
    gate = EventGate(cooldown=12, clear=0.5)
    opened, scores = [], []
    for i, x in enumerate(values):
        t = times[i] if times is not None else i * 1000
        r = g.step({"x": x}, t)
        scores.append(r.score)
        if gate.update(r.score):
            opened.append(i)
    return opened, scores


def gaussian(n: int, seed: int, sd: float = 1.0, mean: float = 20.0) -> list[float]:
    rng = random.Random(seed)
    return [mean + rng.gauss(0, sd) for _ in range(n)]


NORMAL: dict[str, Callable[[random.Random], list[float]]] = {
    "gaussian": lambda r: [20 + r.gauss(0, 0.3) for _ in range(6000)],
    "quantised": lambda r: [round(20 + r.gauss(0, 0.3)) for _ in range(6000)],
    "zero-heavy": lambda r: [
        float(r.choice([1, 2, 3])) if r.random() < 0.1 else 0.0 for _ in range(6000)
    ],
    "heavy-tailed": lambda r: [
        20 + r.gauss(0, 0.3) * (4 if r.random() < 0.02 else 1) for _ in range(6000)
    ],
    "flat": lambda r: [7.0] * 6000,
    "random walk": lambda r: list(_walk(r, 6000)),
}


def _walk(r: random.Random, n: int) -> Iterator[float]:
    x = 0.0
    for _ in range(n):
        x += r.gauss(0, 0.1)
        yield x


@pytest.mark.parametrize("kind", list(NORMAL))
def test_normal_real_world_shaped_streams_raise_at_most_one_alarm(kind: str) -> None:
    # 6,000 points at 1 s is 1.7 hours: one false alarm a week allows ~0.01 of one
    for seed in (1, 2):
        opened, scores = alarms(NORMAL[kind](random.Random(seed)))
        assert len(opened) <= 1, (kind, seed, opened)
        assert max(scores) <= SCORE_CAP


def test_irregular_sampling_is_normal() -> None:
    rng = random.Random(3)
    times, t = [], 0
    for _ in range(5000):
        t += rng.choice([200, 1000, 1000, 5000, 30_000])
        times.append(t)
    opened, _ = alarms(gaussian(5000, 3), times)
    assert len(opened) <= 1


def test_a_spike_raises_an_alarm_at_once_and_only_there() -> None:
    values = gaussian(3000, 4)
    values[2000] += 15
    opened, scores = alarms(values)
    assert 2000 in opened
    assert scores[2000] >= 1
    assert all(s < 1 for s in scores[2013:])


def test_a_spike_on_a_flat_line_and_on_a_quantised_stream() -> None:
    flat = [5.0] * 2000 + [9.0] + [5.0] * 500
    assert 2000 in alarms(flat)[0]
    rng = random.Random(5)
    quantised = [round(20 + rng.gauss(0, 0.3)) for _ in range(3000)]
    quantised[2500] = 30
    assert 2500 in alarms(quantised, resolutions={"x": 1.0})[0]


def test_a_regime_change_alarms_then_is_re_baselined() -> None:
    values = gaussian(3000, 6) + gaussian(6000, 7, mean=28.0)
    opened, scores = alarms(values)
    assert any(3000 <= i <= 3010 for i in opened)
    # the new regime is the new normal well before the 15-minute re-baselining horizon ends
    assert all(s < 1 for s in scores[3000 + 1800 :])


def test_a_stuck_sensor_on_a_noisy_stream_alarms() -> None:
    values = gaussian(3000, 8) + [20.0] * 400
    opened, _ = alarms(values)
    assert any(3000 < i < 3400 for i in opened)


def test_a_counter_is_judged_as_a_rate_with_resets() -> None:
    rng = random.Random(9)
    values, total = [], 0.0
    for i in range(6000):
        total = 0.0 if i % 1500 == 0 else total + 3 + rng.choice([0, 1])  # sessions restart at 0
        values.append(total)
    assert alarms(values, counters=["x"])[0] == []
    values[4000:] = [v + 500 for v in values[4000:]]  # a jump in the count: a burst of rate
    assert any(3995 <= i <= 4005 for i in alarms(values, counters=["x"])[0])


def test_a_hard_limit_raises_at_once_even_before_warm_up() -> None:
    g = JointGuard(["temperature"], limits={"temperature": (2.0, 8.0)})
    r = g.step({"temperature": 9.0}, 0)
    assert (r.check, r.metrics) == ("limit", ["temperature"])
    assert r.score == SCORE_CAP


def test_values_past_a_hard_limit_are_not_learned() -> None:
    g = JointGuard(["t"], limits={"t": (2.0, 8.0)})
    rng = random.Random(10)
    for i in range(600):
        g.step({"t": 4.5 + rng.gauss(0, 0.08)}, i * 1000)
    for i in range(600, 900):  # five minutes at 9 Cel
        g.step({"t": 9.0}, i * 1000)
    back = g.step({"t": 4.5}, 900_000)
    assert back.score < 1, "the return to normal is not an anomaly"


def test_the_responsible_metric_is_named() -> None:
    g = JointGuard(["vibration", "temperature", "current"])
    rng = random.Random(11)
    for i in range(1000):
        g.step({"vibration": 2 + rng.gauss(0, 0.05), "temperature": 55 + rng.gauss(0, 0.2),
                "current": 12 + rng.gauss(0, 0.1)}, i * 1000)  # fmt: skip
    r = g.step({"vibration": 2.0, "temperature": 55.0, "current": 15.0}, 1_000_000)
    assert r.score >= 1
    assert r.metrics[0] == "current"


def test_metrics_moving_together_raise_the_joint_check() -> None:
    g = JointGuard(["a", "b", "c", "d"])
    rng = random.Random(12)
    for i in range(2000):
        g.step({m: rng.gauss(0, 1) for m in "abcd"}, i * 1000)
    # each 3.8 sigma: no single check alarms at 1e-6, together they are far rarer
    r = g.step({m: 3.8 for m in "abcd"}, 2_000_000)
    parts = max(score(min(1.0, 5 * a.p), g.p_alarm()) for a in r.parts.values())
    assert parts < 1 <= r.score
    assert r.check == "joint"


def test_scores_are_causal() -> None:
    values = gaussian(1500, 13) + gaussian(500, 14, mean=25)
    _, prefix = alarms(values[:1200])
    _, full = alarms(values)
    assert prefix == full[:1200]


def test_state_survives_a_json_round_trip() -> None:
    rng = random.Random(15)
    rows = [{"a": rng.gauss(0, 1), "b": float(rng.choice([0, 0, 0, 1]))} for _ in range(3000)]
    one = JointGuard(["a", "b"], limits={"a": (-10.0, None)}, counters=["b"])
    for i, row in enumerate(rows[:2000]):
        one.step(row, i * 1000)
    two = JointGuard.from_state(json.loads(json.dumps(one.to_state())))
    for i, row in enumerate(rows[2000:], start=2000):
        assert one.step(row, i * 1000) == two.step(row, i * 1000)


def test_sensitivity_is_a_false_alarm_rate() -> None:
    assert alarm_probability(1.0, 1000) == pytest.approx(1000 / (7 * 86_400_000))
    assert alarm_probability(7.0, 60_000) == pytest.approx(60_000 / 86_400_000)
    rng = random.Random(16)
    heavy = [rng.gauss(0, 1) * (5 if rng.random() < 0.01 else 1) for _ in range(20_000)]
    counts = [len(alarms(heavy, per_week=rate)[0]) for rate in (0.01, 1.0, 10_000.0)]
    assert counts[0] <= counts[1] <= counts[2]
    assert counts[2] > counts[0]


def test_the_calibrated_tail_follows_the_stream() -> None:
    light, heavy = TailCalibrator(), TailCalibrator()
    rng = random.Random(17)
    for _ in range(20_000):
        light.learn(abs(rng.gauss(0, 1)))
        heavy.learn(abs(rng.gauss(0, 1)) * (6 if rng.random() < 0.05 else 1))
    assert heavy.p(8.0) > 100 * light.p(8.0)
    assert 0.02 < light.p(2.0) < 0.08


def test_the_score_is_capped_and_one_at_the_alarm_point() -> None:
    p = alarm_probability(1.0, 1000)
    assert score(p, p) == pytest.approx(1.0)
    assert score(0.0, p) == SCORE_CAP
    assert math.isclose(score(1.0, p), 0.0, abs_tol=1e-12)


def test_robust_stream_keeps_learning_through_anomalies() -> None:
    s = RobustStream()
    for i, x in enumerate(gaussian(3000, 18) + gaussian(3000, 19, mean=40)):
        s.step(x, i * 1000)
    assert abs(s.level - 40) < 1  # the model followed the new regime instead of starving


def _tricky_stream(seed: int) -> Iterator[tuple[float, int]]:
    """Three days at a minute with jitter: a daily cycle, quantised noise, a regime change long
    enough to be re-baselined, a stuck run, spikes, a reset, NaN and infinities."""
    rng = random.Random(seed)
    t = 1_767_225_600_000
    for i in range(3 * 1440 + 300):
        t += 60_000 + rng.randint(-3000, 3000) if i % 97 else 0  # a repeated timestamp too
        x = round(20 + 3 * math.sin(i / 229.0) + rng.gauss(0, 0.2), 2)
        if 2000 <= i < 2600:
            x += 4.0
        if 3000 <= i < 3100:
            x = 21.0
        if i in (3500, 3501):
            x = 1e6 if i == 3500 else -1e6
        if i in (4000, 4100, 4200):
            x = (math.nan, math.inf, -math.inf)[(i - 4000) // 100]
        yield x, t


@pytest.mark.parametrize("counter", [False, True])
@pytest.mark.parametrize(("bins", "warmup"), [(48, 30), (0, 30), (48, 0), (0, 1)])
def test_the_written_out_step_is_bit_identical_to_the_methods(
    counter: bool, bins: int, warmup: int
) -> None:
    fast = RobustStream(counter=counter, bins=bins, resolution=0.01, warmup=warmup)
    slow = RobustStream(counter=counter, bins=bins, resolution=0.01, warmup=warmup)
    total = 0.0
    for i, (x, t) in enumerate(_tricky_stream(seed=3)):
        if counter:
            total = 0.0 if i == 2500 else total + abs(x) if math.isfinite(x) else total
            x = total
        a, b = fast.step(x, t), slow._step_reference(x, t)
        assert repr(a) == repr(b), i
        assert repr(fast.to_state()) == repr(slow.to_state()), i
    assert slow.changes >= 1 or counter  # the re-baselining branch ran


def test_the_calibrators_written_out_p_is_bit_identical_to_the_first() -> None:
    rng = random.Random(5)
    cals = [TailCalibrator(), TailCalibrator(q=0.135, q2=0.0067, m_min=1.0, min_n=20)]
    special = [0.0, -0.0, -1.0, 2.0, 5.0, 1e300, math.inf, -math.inf, math.nan]
    for i in range(3000):
        for cal in cals:
            for v in [rng.expovariate(0.5), rng.gauss(0, 3), *special]:
                assert repr(cal.p(v)) == repr(cal._p_reference(v)), (i, v)
            x = rng.expovariate(0.3 if i % 50 else 0.01) if i % 7 else special[i % 9]
            twin = TailCalibrator.from_state(cal.to_state())
            expected = twin.p(x)
            twin.learn(x)
            assert repr(cal.p_learn(x)) == repr(expected), (i, x)  # p, then learn, in one
            assert repr(cal) == repr(twin), (i, x)


@pytest.mark.parametrize("baseline", [None, {"fit_points": 200}])
def test_the_written_out_joint_check_is_bit_identical_to_the_first(
    baseline: dict[str, int] | None,
) -> None:
    metrics = ("a", "b", "c", "n")
    kw: dict[str, object] = {
        "counters": ("n",),
        "limits": {"c": (None, 150.0)},
        "resolutions": {"a": 0.01},
        "baseline": baseline,
    }
    fast, slow = JointGuard(metrics, **kw), JointGuard(metrics, **kw)  # type: ignore[arg-type]
    slow.step = slow._step_reference  # type: ignore[method-assign]
    rng = random.Random(9)
    streams = _tricky_stream(seed=4)
    count = 0.0
    checks: set[str] = set()
    for i, (a, t) in enumerate(streams):
        count = count + rng.randint(0, 9) if i != 1000 else 0.0
        values = {"a": a, "b": 50.0 if i % 7 else 50.5, "c": 100 + rng.expovariate(0.1)}
        if i % 11:
            values["n"] = count
        if 1500 <= i < 1530:
            values["b"] = 55.0
        limits = {"b": (None, 54.0)} if i % 5 == 0 else None  # a shipment's range
        r, s = fast.step(values, t, limits=limits), slow.step(values, t, limits=limits)
        assert repr(r) == repr(s), i
        checks.add(r.check)
    assert repr(fast.to_state()) == repr(slow.to_state())
    assert {"limit", "level", "stuck"} <= checks
    assert baseline is None or {"baseline", "change"} <= checks


def test_the_written_out_alarm_point_and_score_are_bit_identical_to_the_builtins() -> None:
    def alarm_reference(per_week: float, interval_ms: float) -> float:
        return min(max(per_week * max(interval_ms, 1.0) / (7 * 86_400_000), 1e-12), 0.05)

    def score_reference(p: float, p_alarm: float) -> float:
        if p <= 1e-30:
            return SCORE_CAP
        return min(math.log(min(p, 1.0)) / math.log(p_alarm), SCORE_CAP)

    special = [0.0, -0.0, 0.5, 1.0, 2.0, 1e-31, 1e-12, 0.05, 1e300, math.inf, math.nan]
    rng = random.Random(2)
    xs = special + [10 ** rng.uniform(-40, 8) for _ in range(2000)]
    for x in xs:
        for y in (0.0, 0.1, 1.0, 3.0, 1000.0, 6e8, math.inf, math.nan, x):
            assert repr(alarm_probability(y, x)) == repr(alarm_reference(y, x)), (x, y)
            assert repr(alarm_probability(x, y)) == repr(alarm_reference(x, y)), (x, y)
    for p in xs:
        for pa in (1e-12, 1e-6, 0.05, 0.5, min(p, 0.9) or 0.5):
            assert repr(score(p, pa)) == repr(score_reference(p, pa)), (p, pa)


def _false_alarms_per_day(sensor: str, seeds: range) -> float:
    """Alarms the product's gate opens outside the labelled anomaly (after the first day), per
    stream-day, on ``chainsense.ai.synthetic``'s streams of ``sensor`` (14 days at 5 minutes)."""
    false = 0
    days = 0.0
    for seed in seeds:
        for kind in KINDS:
            s = make_stream(sensor, kind, seed=seed)
            first_day = next(
                (i for i, t in enumerate(s.times) if t - s.times[0] >= 86_400_000), len(s.times)
            )
            opened, _ = alarms(
                s.values, s.times, resolutions={"x": s.resolution},
                counters=["x"] if s.counter else [],
            )  # fmt: skip
            start, end = s.window
            false += sum(1 for i in opened if i >= first_day and not start <= i < end)
            days += (s.times[-1] - s.times[first_day]) / 86_400_000
    return false / days


@pytest.mark.slow
@pytest.mark.parametrize("sensor", REAL_WORLD)
def test_zero_heavy_and_irregular_counter_streams_stay_within_the_false_alarm_rate(
    sensor: str,
) -> None:
    """One false alarm a week is 0.14 a stream-day. Measured on these seeds (300-301, used
    neither to choose ``LEVEL_FAR_PRIOR`` nor in the bench's tables): water 0.083 (0.481 with
    the calibrator's default far-tail prior of 2,000 points), energy 0.045 (0.045)."""
    assert _false_alarms_per_day(sensor, range(300, 302)) <= 1 / 7


def test_a_level_state_saved_with_the_old_far_tail_prior_learns_at_the_new_pace() -> None:
    """A stream saved before LEVEL_FAR_PRIOR (its level calibrator's prior worth 2,000 points)
    keeps its estimates on loading and learns at the new pace from its next reading: it then
    goes on as a stream that had the new weight from that state on, and not as it would have
    with the old weight."""
    s = make_stream("water", "spike", seed=7)
    before = RobustStream(resolution=1.0)
    before.cal_level.prior2 = 2000  # as streams were built before the change
    for x, t in zip(s.values[:1000], s.times[:1000], strict=True):
        before.step(x, t)
    text = json.dumps(before.to_state())
    loaded = RobustStream.from_state(json.loads(text))
    assert loaded.cal_level.prior2 == LEVEL_FAR_PRIOR == 500
    assert (loaded.cal_level.q, loaded.cal_level.q2, loaded.cal_level.n) == (
        before.cal_level.q, before.cal_level.q2, before.cal_level.n,
    )  # fmt: skip
    new_pace = RobustStream.from_state(json.loads(text))
    old_pace = RobustStream.from_state(json.loads(text))
    old_pace.cal_level.prior2 = 2000
    differ = 0
    for x, t in zip(s.values[1000:2000], s.times[1000:2000], strict=True):
        a, b, c = loaded.step(x, t), new_pace.step(x, t), old_pace.step(x, t)
        assert repr(a) == repr(b)
        differ += a.p_level != c.p_level
    assert differ > 0  # the weight matters: the migration is not a no-op
    # a state with any other weight is left as it was saved
    other = json.loads(text)
    other["cal_level"][-1] = 1234
    assert RobustStream.from_state(other).cal_level.prior2 == 1234


def test_a_counters_floor_is_the_rate_of_one_step_over_its_interval() -> None:
    """A 1 Wh register read every 5 minutes, 40 +- 5 Wh an interval (0.13 Wh/s): its rate's
    noise is ~0.017 Wh/s; the floor is one step over the interval (1/300 Wh/s), not one step a
    second (1 Wh/s, which hid a fourfold jump in consumption)."""
    rng = random.Random(11)
    s = RobustStream(counter=True, resolution=1.0)
    register, t = 1_000_000.0, 1_767_225_600_000
    for _ in range(1500):
        register += round(40 + rng.gauss(0, 5))
        t += 300_000
        a = s.step(register, t)
    assert a.sigma < 0.1
    register += 160  # four times the usual consumption in one interval
    jump = s.step(register, t + 300_000)
    assert jump.p_level < s.p_alarm()
