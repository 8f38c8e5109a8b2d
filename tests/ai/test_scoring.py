"""bench/_scoring.py, the scoring behind docs/ai.md's tables, against figures its sources publish
(not against itself): NAB's scaled sigmoid values and scoring rules as numenta/NAB's
``nab/scorer.py`` documents them (-1.0 -> 0.98661, -0.5 -> 0.84828, 0 -> 0, +1.0 -> -0.98661; the
first detection in a window counts, a false positive costs by its distance past the preceding
window, -A_fp without one; a missed window costs A_fn), NAB's three profiles, and SKAB's
point-wise F1 / FAR / MAR worked by hand. bench/ is not on the doctest path, so its doctests are
run here too."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _scoring
from _scoring import PROFILES, f1_far_mar, nab_normalised, nab_raw, sigmoid

STANDARD = PROFILES["standard"]


def test_the_scaled_sigmoid_has_nabs_published_values() -> None:
    assert sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert sigmoid(0.0) == 0.0
    assert sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert sigmoid(3.5) == -1.0


def test_the_profiles_are_nabs() -> None:
    # NAB config/profiles.json: standard, reward_low_FP_rate, reward_low_FN_rate
    assert PROFILES == {
        "standard": (1.0, 0.11, 1.0),
        "low_fp": (1.0, 0.22, 1.0),
        "low_fn": (1.0, 0.11, 2.0),
    }


def test_only_a_windows_first_detection_counts_by_its_position() -> None:
    window = [(1000, 1100)]
    assert nab_raw([1000], window, *STANDARD) == pytest.approx(0.98661, abs=1e-5)
    assert nab_raw([1050], window, *STANDARD) == pytest.approx(0.84828, abs=1e-5)
    assert nab_raw([1100], window, *STANDARD) == 0.0
    # a second detection in the same window changes nothing
    assert nab_raw([1050, 1060, 1099], window, *STANDARD) == nab_raw([1050], window, *STANDARD)


def test_false_positives_cost_by_their_distance_past_the_preceding_window() -> None:
    window = [(1000, 1100)]
    a_fp = STANDARD[1]
    # before any window: the full cost
    assert nab_raw([10, 1000], window, *STANDARD) == pytest.approx(0.98661 - a_fp, abs=1e-5)
    # one window length after its end: -A_fp * 0.98661; half a length: -A_fp * 0.84828
    assert nab_raw([1000, 1200], window, *STANDARD) == pytest.approx(
        0.98661 - a_fp * 0.98661, abs=1e-5
    )
    assert nab_raw([1000, 1150], window, *STANDARD) == pytest.approx(
        0.98661 - a_fp * 0.84828, abs=1e-5
    )
    # far after (more than 3 lengths): the full cost
    assert nab_raw([1000, 5000], window, *STANDARD) == pytest.approx(0.98661 - a_fp, abs=1e-5)
    # the closest preceding window is the one that counts
    two = [(1000, 1100), (2000, 2100)]
    assert nab_raw([1000, 2000, 2150], two, *STANDARD) == pytest.approx(
        2 * 0.98661 - a_fp * 0.84828, abs=1e-5
    )


def test_a_missed_window_costs_a_fn_and_normalisation_spans_0_to_100() -> None:
    windows = [(1000, 1100), (2000, 2100)]
    for a_tp, a_fp, a_fn in PROFILES.values():
        assert nab_raw([], windows, a_tp, a_fp, a_fn) == -2 * a_fn
        null = nab_raw([], windows, a_tp, a_fp, a_fn)
        perfect = nab_raw([1000, 2000], windows, a_tp, a_fp, a_fn)
        assert nab_normalised(null, 2, a_tp, a_fn) == pytest.approx(0.0)
        assert nab_normalised(perfect, 2, a_tp, a_fn) == pytest.approx(100.0)
    # one caught at its start, one missed: halfway
    half = nab_raw([1000], windows, *STANDARD)
    assert nab_normalised(half, 2, STANDARD[0], STANDARD[2]) == pytest.approx(50.0)
    # a detector that alarms everywhere can score below 0
    noisy = nab_raw(list(range(0, 5000, 50)), windows, *STANDARD)
    assert nab_normalised(noisy, 2, STANDARD[0], STANDARD[2]) < 0


def test_skab_point_wise_f1_far_mar_by_hand() -> None:
    predicted = [0, 1, 1, 1, 0, 0, 1, 0, 0, 0]
    labels = [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    # tp 2, fp 2, fn 2, tn 4
    f1, far, mar = f1_far_mar(predicted, labels)
    assert f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert far == pytest.approx(2 / 6)
    assert mar == pytest.approx(2 / 4)
    assert f1_far_mar([0, 0], [0, 0]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"shorter|longer"):
        f1_far_mar([0, 1], [0])


def test_the_modules_doctests_pass() -> None:
    failed, attempted = doctest.testmod(_scoring)
    assert attempted > 0
    assert failed == 0


def test_the_synthetic_benchs_event_scoring() -> None:
    """bench/detect.py scores events per stream (its own NAB variant: a flat cost per false
    alarm after the learning day, the window's end exclusive), normalised like NAB."""
    import detect

    def result(events: list[int], probation: int = 50) -> detect.StreamResult:
        return detect.StreamResult("spike", events, (100, 200), probation, 1.0)

    balanced = detect.PROFILES["balanced"]
    assert detect.score([result([100])], *balanced) == pytest.approx(100.0)
    assert detect.score([result([])], *balanced) == pytest.approx(0.0)
    perfect = 0.98661 + 1
    assert detect.score([result([150])], *balanced) == pytest.approx(
        100 * (0.84828 + 1) / perfect, abs=1e-3
    )
    # a false alarm after the learning day costs A_fp; one within it nothing; the window's
    # end is outside it
    assert detect.score([result([10, 100, 300])], *balanced) == pytest.approx(
        100 * (0.98661 - 0.11 + 1) / perfect, abs=1e-3
    )
    assert detect.score([result([200])], *balanced) == pytest.approx(
        100 * (-1 - 0.11 + 1) / perfect, abs=1e-3
    )


def test_the_synthetic_benchs_opt_threshold_can_be_the_alarm_point() -> None:
    """The development-chosen threshold is searched among the score quantiles and 1.0, so a
    detector whose alarm point is best gets it."""
    import detect
    from chainsense.ai.synthetic import make_stream

    streams = [make_stream("temperature", kind, seed=100) for kind in ("spike", "level_shift")]
    scored = [detect.scored(detect.JointStream, s) for s in streams]
    best = detect.best_threshold(scored)
    at_best = detect.score([detect.run(s, best) for s in scored], *detect.PROFILES["balanced"])
    at_one = detect.score([detect.run(s, 1.0) for s in scored], *detect.PROFILES["balanced"])
    assert at_best >= at_one
