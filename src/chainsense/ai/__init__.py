"""The AI layer: streaming anomaly detection, predictive maintenance and demand forecasting.

Domain code only (no HTTP, no terminal): detectors share the ``learn_one`` / ``score_one``
interface of :mod:`chainsense.ai.base`; :class:`~chainsense.ai.guard.SensorGuard` is the default.
"""

from chainsense.ai.base import (
    AnomalyFilter,
    Detector,
    DetectorStateError,
    EventGate,
    Expected,
    restore,
)
from chainsense.ai.detectors import EWMAZ, RollingMAD, SeasonalEWMA
from chainsense.ai.guard import SensorGuard

__all__ = [
    "EWMAZ",
    "AnomalyFilter",
    "Detector",
    "DetectorStateError",
    "EventGate",
    "Expected",
    "RollingMAD",
    "SeasonalEWMA",
    "SensorGuard",
    "restore",
]
