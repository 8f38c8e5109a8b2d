"""Scoring methods for anomaly detectors: NAB (windows, scaled sigmoid, profiles) and SKAB's
point-wise F1 / FAR / MAR, as published.

NAB (Lavin & Ahmad 2015, numenta/NAB ``nab/scorer.py``, ``sweeper.py``): each labelled window
is rewarded once, by its first detection, with ``A_tp * sigmoid(rel)`` where ``rel`` runs from
-1 at the window's start to 0 at its end (``sigmoid(rel) = 2 / (1 + exp(5 rel)) - 1``: ~0.987
early, 0 late); a window with no detection costs ``A_fn``; a detection outside every window
costs ``A_fp * sigmoid(d)`` with ``d`` the distance past the preceding window in window lengths
(``-A_fp`` after 3 lengths, or when no window precedes). The raw total is normalised to
``100 * (S - S_null) / (S_perfect - S_null)``: 0 detects nothing, 100 catches every window at
its start. SKAB's changepoint problem uses a window of 60 s to the right of each changepoint
and sums raw scores over all files before normalising, as here.

>>> windows = [(100, 160)]
>>> round(nab_raw([100], windows, *PROFILES["standard"]), 3)
0.987
>>> round(nab_raw([], windows, *PROFILES["standard"]), 3), nab_raw([10], windows, 1, 0.11, 1)
(-1.0, -1.11)
>>> f1_far_mar([1, 1, 0, 0], [1, 0, 1, 0])
(0.5, 0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["PROFILES", "f1_far_mar", "nab_normalised", "nab_raw", "sigmoid"]

PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 0.11, 1.0),
    "low_fp": (1.0, 0.22, 1.0),
    "low_fn": (1.0, 0.11, 2.0),
}
"""NAB's application profiles: (A_tp, A_fp, A_fn)."""


def sigmoid(rel: float) -> float:
    if rel > 3:
        return -1.0
    return 2 / (1 + math.exp(5 * rel)) - 1


def nab_raw(
    detections: Sequence[int],
    windows: Sequence[tuple[int, int]],
    a_tp: float,
    a_fp: float,
    a_fn: float,
) -> float:
    """The raw NAB score of detection times against (start, end) windows (same time unit)."""
    total = 0.0
    hit = [False] * len(windows)
    for t in sorted(detections):
        inside = next((i for i, (s, e) in enumerate(windows) if s <= t <= e), None)
        if inside is not None:
            if not hit[inside]:
                s, e = windows[inside]
                hit[inside] = True
                total += a_tp * sigmoid((t - e) / max(e - s, 1))
            continue
        before = [(s, e) for s, e in windows if e < t]
        if before:
            s, e = max(before, key=lambda w: w[1])
            total += a_fp * sigmoid((t - e) / max(e - s, 1))
        else:
            total -= a_fp
    total -= a_fn * hit.count(False)
    return total


def nab_normalised(raw: float, n_windows: int, a_tp: float, a_fn: float) -> float:
    """``100 * (raw - null) / (perfect - null)`` summed over files with ``n_windows`` windows."""
    null = -a_fn * n_windows
    perfect = a_tp * sigmoid(-1.0) * n_windows
    return 100 * (raw - null) / (perfect - null) if n_windows else 0.0


def f1_far_mar(predicted: Sequence[int], labels: Sequence[int]) -> tuple[float, float, float]:
    """SKAB's point-wise F1, false alarm rate FP / (FP + TN), missed alarm rate FN / (FN + TP)."""
    tp = fp = fn = tn = 0
    for p, y in zip(predicted, labels, strict=True):
        if p and y:
            tp += 1
        elif p:
            fp += 1
        elif y:
            fn += 1
        else:
            tn += 1
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    far = fp / (fp + tn) if fp + tn else 0.0
    mar = fn / (fn + tp) if fn + tp else 0.0
    return f1, far, mar
