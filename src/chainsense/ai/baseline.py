"""BaselineModel: a device's metrics judged together against its own commissioning baseline.

SKAB's convention, and a common one in plant monitoring: the first ``fit_points`` readings of a
device are normal operation. The model collects them, then fits once:

- per metric, a straight line through time on the first ``1 - holdout`` of the window: its
  mean, its slope and the noise around the line (never below the metric's ``resolution``);
- the correlation of the metrics' standardised residuals, shrunk towards the identity
  (``ridge``), inverted: the precision matrix ``P``.

Each later reading is standardised, ``z_j = (x_j - mean_j) / s_j(t)``, where the scale grows with
the time since the fit by the metric's own drift in the window,
``s_j(t) = sqrt(noise_j^2 + (drift * slope_j * h)^2)``: a metric that was drifting while it was
learned is expected to keep drifting and is judged more leniently the longer that goes on. A
multivariate EWMA of ``z`` (MEWMA, ``lam``) gives Hotelling's statistic
``T2 = e' P e * (2 - lam) / lam``: several metrics moving moderately, or one metric leaving its
usual relation to the others, both raise it, and the EWMA makes a sustained move count more
than one noisy reading (persistence without a k-of-n counter). Each metric's share of ``T2``
(``e_j (P e)_j``) names the metrics responsible.

Calibration: the last ``holdout`` of the window is not used in the fit; the model replays it and
fits an exponential tail to its ``T2`` values (median, mean excess over the median, at least
1):
``P(T2 >= v) = 0.5 exp(-(v - median) / m)``. That held-out tail is honest about drift and
autocorrelation (in-sample ``T2`` is too small). The caller turns ``p`` into a score against its
alarm point (:func:`~chainsense.ai.calibrate.score`).

**Change points** (when the caller passes its alarm point ``p_alarm``): beside the judgement
against the commissioning window, a second MEWMA (``change_lam``) compares each reading with the
*current regime*, a reference that re-baselines. A regime's mean is judged, so each metric is
standardised by its long-run scale (its noise times ``sqrt((1 + rho) / (1 - rho))``, ``rho``
the lag-1 correlation of its residuals in the window: a slowly wandering temperature is not a
change every few minutes). The reference follows the regime slowly (a running mean over at
most ``memory`` readings, with a trend for a metric that drifts, Holt's method, smoothed by
``trend``); the statistic ``T2_c`` is calibrated on the held-out part of the window replayed as
after a change (the reference learns ``settle`` readings, then judges), with an exponential
tail never steeper than a scaled chi-square's of the same median; when its tail probability
falls below ``p_alarm`` the reading is a **change point** (``change``, the metrics that moved
most named in ``change_metrics``): the reference restarts from that reading and learns the new
regime for ``settle`` readings before it judges again. So a regime's onset, each later phase
and its return to normal are reported at the time they happen, not only the first departure
from the window, which an alarm stays open through.

The model never changes after the fit except for its EWMAs and the change reference, all
updated in order from the readings alone, so scores and change points are causal, and the whole
state is JSON (``to_state`` / ``from_state``).

>>> import math
>>> m = BaselineModel(("a", "b"), fit_points=200)
>>> for i in range(200):
...     noise = math.sin(i * 1.7)
...     _ = m.step({"a": 10 + noise, "b": 20 + 2 * noise + 0.1 * math.cos(i)}, i * 1000)
>>> m.fitted, m.step({"a": 10.0, "b": 20.0}, 200_000).p > 0.01
(True, True)
>>> r = [m.step({"a": 11.0, "b": 20.0}, (201 + i) * 1000) for i in range(30)][-1]
>>> r.p < 1e-6, r.metrics     # ``a`` left its usual relation to ``b``
(True, ['a'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import mul
from typing import Any

from chainsense.ai.calibrate import P_FLOOR

__all__ = ["BaselineModel", "BaselineResult", "invert"]


@dataclass(frozen=True, slots=True)
class BaselineResult:
    """One reading against the baseline: its tail probability, its ``T2`` and the metrics
    responsible (largest share of ``T2`` first); ``ready`` once the model is fitted."""

    p: float
    t2: float
    metrics: list[str]
    ready: bool
    change: bool = False
    change_metrics: list[str] = field(default_factory=list)


def invert(a: Sequence[Sequence[float]]) -> list[list[float]]:
    """The inverse of a symmetric positive definite matrix (Gauss-Jordan, partial pivoting).

    >>> invert([[2.0, 0.0], [0.0, 4.0]])
    [[0.5, 0.0], [0.0, 0.25]]
    """
    n = len(a)
    m = [
        list(map(float, row)) + [1.0 if i == j else 0.0 for j in range(n)]
        for i, row in enumerate(a)
    ]
    for c in range(n):
        pivot = max(range(c, n), key=lambda r: abs(m[r][c]))
        if abs(m[pivot][c]) < 1e-300:
            raise ValueError("singular matrix")
        m[c], m[pivot] = m[pivot], m[c]
        d = m[c][c]
        m[c] = [v / d for v in m[c]]
        for r in range(n):
            if r != c and m[r][c] != 0.0:
                f = m[r][c]
                m[r] = [v - f * w for v, w in zip(m[r], m[c], strict=True)]
    return [row[n:] for row in m]


class BaselineModel:
    """See the module docstring. ``resolutions``: metric -> the smallest meaningful step."""

    _PARAMS = ("fit_points", "holdout", "ridge", "lam", "drift")
    _STATE = (
        "buffer", "times", "last", "fitted", "mean", "slope", "noise", "t_mid", "precision",
        "e", "median", "excess",
    )  # fmt: skip
    _CHANGE_PARAMS = ("change_lam", "settle", "memory", "trend")
    _CHANGE_STATE = (
        "c_scale", "ref", "ref_trend", "ce", "cn", "learning", "c_median", "c_excess",
    )  # fmt: skip

    def __init__(
        self,
        metrics: Sequence[str],
        *,
        resolutions: Mapping[str, float] | None = None,
        fit_points: int = 400,
        holdout: float = 0.3,
        ridge: float = 0.5,
        lam: float = 0.1,
        drift: float = 1.0,
        change_lam: float = 0.1,
        settle: int = 30,
        memory: int = 120,
        trend: float = 0.02,
    ) -> None:
        self.metrics = list(metrics)
        res = resolutions or {}
        self.resolutions = [float(res.get(m, 0.0)) for m in self.metrics]
        self.fit_points = fit_points
        self.holdout = holdout
        self.ridge = ridge
        self.lam = lam
        self.drift = drift
        self.buffer: list[list[float]] = []
        self.times: list[int] = []
        self.last: list[float | None] = [None] * len(self.metrics)
        self.fitted = False
        self.mean: list[float] = []
        self.slope: list[float] = []
        self.noise: list[float] = []
        self.t_mid = 0.0
        self.precision: list[list[float]] = []
        self.e: list[float] = []
        self.median = 0.0
        self.excess = 1.0
        # the change-point detector: the current regime's reference (in noise units), its trend
        self.change_lam = change_lam
        self.settle = settle
        self.memory = memory
        self.trend = trend
        self.ref: list[float] | None = None
        self.ref_trend: list[float] = []
        self.ce: list[float] = []
        self.cn = 0
        self.learning = 0
        self.c_median = 0.0
        self.c_excess = 1.0
        self.c_scale: list[float] = []

    # --- fitting -----------------------------------------------------------------------------

    def _row(self, values: Mapping[str, float]) -> list[float] | None:
        row: list[float] = []
        last = self.last
        get = values.get
        isfinite = math.isfinite
        for i, m in enumerate(self.metrics):
            x = get(m, last[i])
            if x is None or not isfinite(x):
                return None
            row.append(float(x))
        self.last = list(row)
        return row

    def _fit(self) -> None:
        k = len(self.metrics)
        n = max(int(len(self.buffer) * (1.0 - self.holdout)), 3)
        rows, ts = self.buffer[:n], [float(t) for t in self.times[:n]]
        t_mid = sum(ts) / n
        stt = sum((t - t_mid) ** 2 for t in ts)
        mean, slope, noise = [], [], []
        resid: list[list[float]] = [[0.0] * k for _ in range(n)]
        for j in range(k):
            col = [r[j] for r in rows]
            mu = sum(col) / n
            b = (
                sum((t - t_mid) * (x - mu) for t, x in zip(ts, col, strict=True)) / stt
                if stt
                else 0.0
            )
            rs = [x - mu - b * (t - t_mid) for t, x in zip(ts, col, strict=True)]
            sd = math.sqrt(sum(r * r for r in rs) / max(n - 2, 1))
            sd = max(sd, self.resolutions[j], 1e-9 * max(abs(mu), 1.0))
            mean.append(mu)
            slope.append(b)
            noise.append(sd)
            for i, r in enumerate(rs):
                resid[i][j] = r / sd
        corr = [
            [
                (1 - self.ridge) * sum(resid[i][a] * resid[i][c] for i in range(n)) / n
                + (self.ridge if a == c else 0.0)
                for c in range(k)
            ]
            for a in range(k)
        ]
        self.mean, self.slope, self.noise, self.t_mid = mean, slope, noise, t_mid
        # the change detector judges a regime's mean, so each metric's scale is its long-run
        # one: an autocorrelated residual (lag-1 correlation rho) wanders by
        # sqrt((1 + rho) / (1 - rho)) of its noise (AR(1))
        self.c_scale = []
        for j in range(k):
            num = sum(resid[i][j] * resid[i - 1][j] for i in range(1, n))
            den = sum(resid[i][j] ** 2 for i in range(n)) or 1.0
            rho = min(max(num / den, 0.0), 0.98)
            self.c_scale.append(noise[j] * math.sqrt((1 + rho) / (1 - rho)))
        self.precision = invert(corr)
        self.fitted = True
        # replay the window: the held-out part's statistics calibrate the tail
        self.e = [0.0] * k
        held: list[float] = []
        for i, (row, t) in enumerate(zip(self.buffer, self.times, strict=True)):
            t2, _ = self._advance(row, t, first=i == 0)
            if i >= n:
                held.append(t2)
        self.median, self.excess = _tail(held)
        # the change detector: calibrated on the held-out part (a reference starting there),
        # then started on the window's last ``settle`` readings
        # as after a change point: the first reading starts the reference, which learns for
        # ``settle`` readings, then judges
        self._restart_change()
        c_held = []
        for i, row in enumerate(self.buffer[n:]):
            v = self._change_stat(row)
            if i == 0:
                self.learning = self.settle
            elif i > self.settle:
                c_held.append(v)
        self.c_median, self.c_excess = _tail(c_held)
        # a few dozen correlated values say little about the tail: never steeper than a scaled
        # chi-square's with that median (Box: median ~ c (k - 2/3), tail scale 2c)
        k = len(self.metrics)
        self.c_excess = max(self.c_excess, 2.0 * self.c_median / max(k - 2.0 / 3.0, 1.0))
        self._restart_change()
        for row in self.buffer[-(self.settle + 1) :]:
            self._change_stat(row)
        self.buffer, self.times = [], []

    def _restart_change(self) -> None:
        self.ref, self.ref_trend, self.ce, self.cn, self.learning = None, [], [], 0, 0

    def _change_stat(self, row: Sequence[float]) -> float:
        """Move the change detector by ``row``; its ``T2_c`` against the current regime (0 while
        the reference is learning a new regime)."""
        # a hot path (once a reading): locals, and each ``sum`` over the same terms in the same
        # order as first written (:meth:`_change_stat_reference`; the tests compare the two)
        z = [x / s for x, s in zip(row, self.c_scale, strict=True)]
        k = len(z)
        lam = self.change_lam
        ref = self.ref
        if ref is None:
            self.ref, self.ref_trend, self.ce, self.cn = z, [0.0] * k, [0.0] * k, 1
            return 0.0
        keep = 1 - lam
        if self.learning > 0:  # a new regime: its reference is the running mean so far
            self.cn += 1
            self.learning -= 1
            cn = self.cn
            ce = self.ce
            for j in range(k):
                ref[j] += (z[j] - ref[j]) / cn
                ce[j] = keep * ce[j] + lam * (z[j] - ref[j])
            return 0.0
        ce, trend = self.ce, self.ref_trend
        for j in range(k):
            ce[j] = keep * ce[j] + lam * (z[j] - ref[j])
        pe = [sum(map(mul, prow, ce)) for prow in self.precision]
        t2: float = sum(map(mul, ce, pe)) * (2 - lam) / lam
        # the reference follows the regime slowly (Holt: level and a damped trend)
        cn = self.cn = self.cn + 1
        memory = self.memory
        a = 1.0 / (memory if memory < cn else cn)
        if cn > self.settle + 30:
            damp = self.trend
            damp_keep = 1 - damp
            for j in range(k):
                old = ref[j]
                tj = trend[j]
                new = ref[j] = old + tj + a * (z[j] - old - tj)
                trend[j] = damp * (new - old) + damp_keep * tj
        else:
            for j in range(k):
                old = ref[j]
                tj = trend[j]
                ref[j] = old + tj + a * (z[j] - old - tj)
        return t2

    # --- the first versions of the two hot paths (the tests compare them with the above) -----

    def _change_stat_reference(self, row: Sequence[float]) -> float:
        z = [x / s for x, s in zip(row, self.c_scale, strict=True)]
        k = len(z)
        lam = self.change_lam
        ref = self.ref
        if ref is None:
            self.ref, self.ref_trend, self.ce, self.cn = z, [0.0] * k, [0.0] * k, 1
            return 0.0
        if self.learning > 0:
            self.cn += 1
            self.learning -= 1
            for j in range(k):
                ref[j] += (z[j] - ref[j]) / self.cn
                self.ce[j] = (1 - lam) * self.ce[j] + lam * (z[j] - ref[j])
            return 0.0
        ce, trend = self.ce, self.ref_trend
        for j in range(k):
            ce[j] = (1 - lam) * ce[j] + lam * (z[j] - ref[j])
        pe = [sum(p * e for p, e in zip(prow, ce, strict=True)) for prow in self.precision]
        t2 = sum(e * q for e, q in zip(ce, pe, strict=True)) * (2 - lam) / lam
        self.cn += 1
        a = 1.0 / min(self.cn, self.memory)
        follow = self.cn > self.settle + 30
        for j in range(k):
            old = ref[j]
            ref[j] = old + trend[j] + a * (z[j] - old - trend[j])
            if follow:
                trend[j] = self.trend * (ref[j] - old) + (1 - self.trend) * trend[j]
        return t2

    def _advance_reference(
        self, row: Sequence[float], t: int, *, first: bool = False
    ) -> tuple[float, list[float]]:
        h = t - self.t_mid
        lam = self.lam
        for j, x in enumerate(row):
            sd = math.hypot(self.noise[j], self.drift * self.slope[j] * h)
            z = (x - self.mean[j]) / sd
            self.e[j] = z if first else lam * z + (1 - lam) * self.e[j]
        pe = [sum(p * e for p, e in zip(prow, self.e, strict=True)) for prow in self.precision]
        scale = (2 - lam) / lam
        shares = [e * q * scale for e, q in zip(self.e, pe, strict=True)]
        return sum(shares), shares

    # --- judging -----------------------------------------------------------------------------

    def _advance(
        self, row: Sequence[float], t: int, *, first: bool = False
    ) -> tuple[float, list[float]]:
        """Move the EWMA by ``row``; (T2, each metric's share of it)."""
        h = t - self.t_mid
        lam = self.lam
        keep = 1 - lam
        noise, slope, mean, e = self.noise, self.slope, self.mean, self.e
        drift = self.drift
        hypot = math.hypot
        for j, x in enumerate(row):
            z = (x - mean[j]) / hypot(noise[j], drift * slope[j] * h)
            e[j] = z if first else lam * z + keep * e[j]
        pe = [sum(map(mul, prow, e)) for prow in self.precision]
        scale = (2 - lam) / lam
        shares = [a * b * scale for a, b in zip(e, pe, strict=True)]
        return sum(shares), shares

    def p_of(self, t2: float) -> float:
        return _tail_p(t2, self.median, self.excess)

    def step(
        self, values: Mapping[str, float], t: int, *, p_alarm: float | None = None
    ) -> BaselineResult:
        """Judge one reading (metric -> value; a missing metric keeps its last value), then move
        on: during the window the reading is collected, and the window's last one fits. With
        ``p_alarm``, also tell whether the reading is a change point (then re-baseline)."""
        judged = self.judge(values, t, p_alarm=p_alarm)
        if judged is None:
            return BaselineResult(1.0, 0.0, [], False)
        p, t2, shares, moved = judged
        named = self._named(shares, t2)
        if moved is None:
            return BaselineResult(p, t2, named, True)
        return BaselineResult(p, t2, named, True, True, moved)

    def judge(
        self, values: Mapping[str, float], t: int, *, p_alarm: float | None = None
    ) -> tuple[float, float, list[float], list[str] | None] | None:
        """:meth:`step` without building its result (the caller's hot path): None until the
        model is fitted (or for a reading it cannot use), else ``(p, T2, each metric's share of
        T2, the metrics that moved at a change point or None)``; the metrics responsible are
        ``names(shares, T2)``."""
        row = self._row(values)
        if row is None:
            return None
        if not self.fitted:
            self.buffer.append(row)
            self.times.append(t)
            if len(self.buffer) >= self.fit_points:
                self._fit()
            return None
        t2, shares = self._advance(row, t)
        p = _tail_p(t2, self.median, self.excess)  # ``self.p_of(t2)``
        if p_alarm is None:
            return p, t2, shares, None
        t2c = self._change_stat(row)
        if _tail_p(t2c, self.c_median, self.c_excess) >= p_alarm:
            return p, t2, shares, None
        # a change point: name what moved, restart the reference at this reading
        ce = self.ce
        pe = [sum(q * e for q, e in zip(prow, ce, strict=True)) for prow in self.precision]
        c_shares = [e * q for e, q in zip(ce, pe, strict=True)]
        moved = self._named(c_shares, sum(c_shares))
        self._restart_change()
        self._change_stat(row)
        self.learning = self.settle
        return p, t2, shares, moved

    def names(self, shares: Sequence[float], total: float) -> list[str]:
        """The metrics responsible for ``total`` (largest share first)."""
        return self._named(shares, total)

    def _named(self, shares: Sequence[float], total: float) -> list[str]:
        order = sorted(range(len(shares)), key=lambda j: -shares[j])
        cut = 0.25 * max(total, 1e-300)
        metrics = self.metrics
        named = [metrics[j] for j in order if shares[j] >= cut]
        return named or [metrics[order[0]]]

    def to_state(self) -> dict[str, Any]:
        return (
            {"metrics": self.metrics, "resolutions": self.resolutions}
            | {f: getattr(self, f) for f in self._PARAMS + self._CHANGE_PARAMS}
            | {f: getattr(self, f) for f in self._STATE + self._CHANGE_STATE}
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BaselineModel:
        b = cls(
            state["metrics"],
            resolutions=dict(zip(state["metrics"], state["resolutions"], strict=True)),
            **{f: state[f] for f in cls._PARAMS + cls._CHANGE_PARAMS if f in state},
        )
        for f in cls._STATE:
            setattr(b, f, state[f])
        if "ref" in state:
            for f in cls._CHANGE_STATE:
                setattr(b, f, state[f])
        elif b.fitted:
            # saved before change points existed: the reference starts at the next reading,
            # judged after ``settle`` readings; the tail is the commissioning statistic's
            b.c_median, b.c_excess = b.median, b.excess
            b.c_scale = list(b.noise)
            b.learning = b.settle
        b._check_shapes()
        return b

    def _check_shapes(self) -> None:
        """A fitted state's vectors and matrix have one entry per metric. The products over
        them (``sum(map(mul, ...))``) would silently stop at the shorter side of a corrupt
        state, so it is refused here instead (ValueError)."""
        if not self.fitted:
            return
        k = len(self.metrics)
        vectors = {"mean": self.mean, "slope": self.slope, "noise": self.noise, "e": self.e}
        if self.ref is not None:
            vectors |= {
                "ref": self.ref, "ref_trend": self.ref_trend, "ce": self.ce,
                "c_scale": self.c_scale,
            }  # fmt: skip
        wrong = [name for name, v in vectors.items() if len(v) != k]
        if len(self.precision) != k or any(len(row) != k for row in self.precision):
            wrong.append("precision")
        if wrong:
            raise ValueError(
                f"baseline state of {k} metrics has {', '.join(wrong)} of another size"
            )


def _tail(values: list[float]) -> tuple[float, float]:
    """(median, mean excess over it, at least 1) of held-out statistics: the exponential tail
    ``P(V >= v) = 0.5 exp(-(v - median) / excess)``."""
    if not values:
        return 0.0, 1.0
    held = sorted(values)
    med = held[len(held) // 2]
    above = [v - med for v in held if v > med]
    # never a steeper tail than chi-square's (scale 2) halved: a window too quiet or too
    # regular must not make an ordinary reading look impossible
    return med, max(sum(above) / len(above), 1.0) if above else 1.0


def _tail_p(v: float, median: float, excess: float) -> float:
    if v <= median:
        return 1.0
    return max(0.5 * math.exp(-(v - median) / excess), P_FLOOR)
