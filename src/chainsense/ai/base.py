"""The detector interface, the anomaly filter, and how detectors are saved as JSON.

Every detector watches **one stream** (one metric of one device) and has two methods, as in
online-ml/river's ``anomaly/base.py``:

- ``score_one(x, t)``: how anomalous the value ``x`` at time ``t`` (ms) is, *without* changing the
  detector; ``>= 1.0`` means anomalous at the default sensitivity;
- ``learn_one(x, t)``: update the detector with ``x`` (call it after ``score_one``).

A detector only ever sees the past (it is updated one point at a time, in order), so its scores
are causal by construction; ``tests/ai/test_detectors.py`` checks it for each one anyway. Its
state is plain JSON (``to_state`` / :func:`restore`), never pickle, so it survives a restart and
an upgrade can read it.

>>> from chainsense.ai.detectors import RollingMAD
>>> guarded = AnomalyFilter(RollingMAD(window=20, min_points=5))
>>> [round(guarded.process(v, i), 2) for i, v in enumerate([10, 11, 10, 11, 10, 11, 10, 50])]
[0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.13, 10.79]
>>> guarded.detector.count   # the 50 was kept out of what the model learned
7
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from chainsense.errors import ChainSenseError

__all__ = [
    "AnomalyFilter",
    "Detector",
    "DetectorStateError",
    "EventGate",
    "Expected",
    "register",
    "restore",
]


class DetectorStateError(ChainSenseError):
    """A saved detector state cannot be read (unknown kind, missing field)."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What the detector expected at a time: a value and the range around it that is normal at
    the default sensitivity, plus the check that produced the score (``level``, ``drift``,
    ``stuck``, ``noise``)."""

    value: float
    low: float
    high: float
    check: str = "level"


@runtime_checkable
class Detector(Protocol):
    """One stream's online anomaly detector."""

    kind: ClassVar[str]

    def score_one(self, x: float, t: int) -> float: ...

    def learn_one(self, x: float, t: int) -> None: ...

    def expected(self, x: float, t: int) -> Expected: ...

    def to_state(self) -> dict[str, Any]: ...


_KINDS: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make a detector restorable by its ``kind``."""
    _KINDS[cls.kind] = cls
    return cls


def restore(state: dict[str, Any]) -> Any:
    """Rebuild a detector (or filter) from what its ``to_state`` returned."""
    kind = state.get("kind")
    if kind == AnomalyFilter.kind:
        return AnomalyFilter.from_state(state)
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise DetectorStateError(f"unknown detector kind {kind!r}")
    try:
        return cls.from_state(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise DetectorStateError(f"cannot restore a {kind} detector: {exc!r}") from exc


class AnomalyFilter:
    """Keeps anomalies out of what a detector learns.

    ``process(x, t)`` scores the point and lets the detector learn it only if the score is below
    ``threshold``. A real change of regime (a new normal level) would otherwise be flagged for
    ever: after ``patience`` anomalous points in a row the detector learns again.
    """

    kind: ClassVar[str] = "filter"

    def __init__(self, detector: Any, *, threshold: float = 1.0, patience: int = 60) -> None:
        self.detector = detector
        self.threshold = threshold
        self.patience = patience
        self.run = 0

    def score_one(self, x: float, t: int) -> float:
        score: float = self.detector.score_one(x, t)
        return score

    def learn_one(self, x: float, t: int, score: float | None = None) -> None:
        if score is None:
            score = self.detector.score_one(x, t)
        if score >= self.threshold:
            self.run += 1
            if self.run <= self.patience:
                see = getattr(self.detector, "see_one", None)
                if see is not None:
                    see(x, t)
                return
        else:
            self.run = 0
        self.detector.learn_one(x, t)

    def process(self, x: float, t: int) -> float:
        """Score, then learn if normal; returns the score."""
        score: float = self.detector.score_one(x, t)
        self.learn_one(x, t, score)
        return score

    def expected(self, x: float, t: int) -> Expected:
        result: Expected = self.detector.expected(x, t)
        return result

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "threshold": self.threshold,
            "patience": self.patience,
            "run": self.run,
            "detector": self.detector.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnomalyFilter:
        guarded = cls(
            restore(state["detector"]), threshold=state["threshold"], patience=state["patience"]
        )
        guarded.run = state["run"]
        return guarded


class EventGate:
    """Turns per-point scores into events, as an operator sees them.

    An event opens at the first point whose score reaches ``threshold`` while none is open, and
    closes after ``cooldown`` points in a row below ``clear`` (a fraction of ``threshold``:
    hysteresis, 1.0 by default); points in between belong to the open event.

    >>> gate = EventGate(threshold=1.0, cooldown=2)
    >>> [gate.update(s) for s in [0.1, 1.5, 2.0, 0.2, 1.2, 0.1, 0.1, 3.0]]
    [False, True, False, False, False, False, False, True]
    """

    __slots__ = ("clear", "cooldown", "open", "quiet", "threshold")

    def __init__(self, *, threshold: float = 1.0, cooldown: int = 12, clear: float = 1.0) -> None:
        self.threshold = threshold
        self.clear = clear
        self.cooldown = cooldown
        self.open = False
        self.quiet = 0

    def update(self, score: float) -> bool:
        """Feed one score; True when it opens a new event."""
        if score >= self.threshold:
            self.quiet = 0
            if not self.open:
                self.open = True
                return True
            return False
        if self.open and score >= self.threshold * self.clear:
            self.quiet = 0
        elif self.open:
            self.quiet += 1
            if self.quiet >= self.cooldown:
                self.open = False
                self.quiet = 0
        return False

    def to_state(self) -> dict[str, Any]:
        return {"open": self.open, "quiet": self.quiet}

    def load(self, state: dict[str, Any]) -> None:
        self.open = bool(state.get("open", False))
        self.quiet = int(state.get("quiet", 0))
