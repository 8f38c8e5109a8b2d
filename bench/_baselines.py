"""Baselines shared by ``bench/skab.py`` and ``bench/detect.py``, so that both benches compare
with the same rolling z-score and the same river pipeline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["half_space_trees", "rolling_z"]


def rolling_z(window: Sequence[float], x: float) -> float:
    """``|x - mean| / sd`` against the points in ``window`` (two passes: running sums of squares
    cancel on large values such as a counter's); 0.0 under 10 points."""
    n = len(window)
    if n < 10:
        return 0.0
    mean = sum(window) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in window) / n) or 1e-9
    return abs(x - mean) / sd


def half_space_trees() -> Any:
    """river's HalfSpaceTrees on min-max scaled features (25 trees of height 12, window 100)."""
    from river import anomaly, preprocessing

    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
        n_trees=25, height=12, window_size=100, seed=42
    )
