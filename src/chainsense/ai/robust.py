"""RobustStream: one stream's robust, calibrated, self-re-baselining anomaly model.

The design answers the weaknesses of the earlier default (issue 13), in general terms:

- **Robust updates, never starved**: every point updates the model; a residual larger than
  ``huber`` sigmas is clipped to that size before it moves the level or the scale (Huber's
  M-estimator), so a spike moves nothing much and a new regime is followed steadily.
- **A scale floor** tied to the stream: sigma is never below the stream's resolution (the
  smallest step seen between two different values, or the schema's fixed-point step; for a
  counter, the rate that step makes over the stream's usual interval) nor below ``floor_frac``
  of its long-run spread, so quantised, zero-heavy and flat streams do not score 1e16 on an
  ordinary step.
- **Calibrated checks**: each check's statistic goes through its own
  :class:`~chainsense.ai.calibrate.TailCalibrator` into a tail probability for this stream:
  ``level`` (the residual), ``shift`` (a short exponentially weighted mean of clipped residuals:
  a sustained move) and ``stuck`` (a run of identical values, against this stream's repeat
  rate: ``P = repeat ** run``). They are combined on the probability scale with a Bonferroni
  factor (``p = 3 * min p_i``), and the score is capped (:func:`~chainsense.ai.calibrate.score`).
- **Re-baselining**: when the ``shift`` check stays past the alarm point for ``rebaseline_ms``,
  the change is confirmed: the level jumps to the recent mean and the shift memory restarts, so
  the new regime is not an alarm for ever (``changes`` counts them).
- **Counters as rates**: with ``counter=True`` the model sees the increase per second (a reset
  to a lower value starts a new count, scored as nothing).

Hard limits and the multivariate judgement live one level up, in
:class:`~chainsense.ai.joint.JointGuard`.

>>> s = RobustStream(resolution=0.01)
>>> for i in range(300):
...     _ = s.step(20.0 + (i % 3) * 0.01, i * 1000)
>>> s.score_one(20.01, 300_000) < 1 <= s.score_one(25.0, 300_000)
True
>>> s.expected(25.0, 300_000).check
'level'
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

from chainsense.ai.base import Expected, register
from chainsense.ai.calibrate import WEEK_MS, TailCalibrator, alarm_probability, score

DAY_MS = 86_400_000

__all__ = ["Assessment", "RobustStream"]

_ABS_TO_SIGMA = 1.2533  # sqrt(pi/2): E|N(0, s)| times this is s
_CHECKS = ("level", "shift", "stuck")
LEVEL_FAR_PRIOR = 500
"""How many points the level check's far-tail prior (Gaussian, P(|z| > 5)) is worth: chosen on
the development streams of ``bench/detect.py`` (seeds 100+) from 200 / 500 / 1,000 / 2,000;
2,000, the calibrator's default, kept a zero-heavy stream's far tail Gaussian for about a week
of 5-minute readings and raised 0.24 false alarms a stream-day where one a week allows 0.14."""
_OLD_LEVEL_FAR_PRIOR = 2000  # what states saved before LEVEL_FAR_PRIOR carry
_new_tuple = tuple.__new__  # what ``Assessment(...)`` calls, without its Python frame


class Assessment(NamedTuple):
    """One point as one stream's model judged it (before learning it). Immutable; a named tuple
    rather than a frozen dataclass because three to eight are made a reading and a frozen
    dataclass is about three times slower to build (one ``object.__setattr__`` per field)."""

    value: float  # what the model saw: the reading, or a counter's rate per second
    predicted: float
    sigma: float
    p_level: float
    p_shift: float
    p_stuck: float
    ready: bool

    @property
    def p(self) -> float:
        """The combined tail probability (Bonferroni over the three checks)."""
        return min(1.0, 3.0 * min(self.p_level, self.p_shift, self.p_stuck))

    @property
    def check(self) -> str:
        ps = (self.p_level, self.p_shift, self.p_stuck)
        return _CHECKS[ps.index(min(ps))]


@register
class RobustStream:
    """See the module docstring. ``per_week``: the expected false alarms a week (sensitivity)."""

    kind: ClassVar[str] = "robust_stream"
    _PARAMS: ClassVar[tuple[str, ...]] = (
        "alpha", "beta", "huber", "shift_alpha", "ref_alpha", "floor_frac", "warmup",
        "rebaseline_ms", "counter", "per_week", "bins", "gamma",
    )  # fmt: skip
    _STATE: ClassVar[tuple[str, ...]] = (
        "n", "level", "scale", "long_mean", "long_dev", "resolution", "last", "last_raw",
        "last_t", "interval", "run", "repeat", "ref", "recent", "shift_since", "changes",
        "first_t", "season", "bin_n",
    )  # fmt: skip

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        beta: float = 0.01,
        huber: float = 3.0,
        shift_alpha: float = 0.02,
        ref_alpha: float = 0.001,
        floor_frac: float = 0.02,
        warmup: int = 30,
        rebaseline_ms: int = 900_000,
        counter: bool = False,
        per_week: float = 1.0,
        resolution: float = 0.0,
        calibrate_points: int = 200,
        bins: int = 48,
        gamma: float = 0.1,
    ) -> None:
        self.alpha = alpha
        self.beta = beta
        self.huber = huber
        self.shift_alpha = shift_alpha
        self.ref_alpha = ref_alpha
        self.floor_frac = floor_frac
        self.warmup = warmup
        self.rebaseline_ms = rebaseline_ms
        self.counter = counter
        self.per_week = per_week
        self.bins = bins
        self.gamma = gamma
        self.first_t: int | None = None
        self.season = [0.0] * bins
        self.bin_n = [0] * bins
        self.n = 0
        self.level = 0.0
        self.scale = 0.0
        self.long_mean = 0.0
        self.long_dev = 0.0
        self.resolution = resolution
        self.last: float | None = None
        self.last_raw: float | None = None
        self.last_t: int | None = None
        self.interval = 0.0
        self.run = 0
        self.repeat = 0.1
        self.ref = 0.0
        self.recent = 0.0
        self.shift_since: int | None = None
        self.changes = 0
        # a single reading's residual has the stream's own marginal tail (heavy for bursts,
        # counts, zero-heavy streams): its far tail is learned within ~500 points; the shift
        # check's smoothed mean keeps the slower, Gaussian-led far tail (issue 13, docs/ai.md)
        self.cal_level = TailCalibrator(min_n=calibrate_points, prior2=LEVEL_FAR_PRIOR)
        self.cal_shift = TailCalibrator(min_n=calibrate_points)
        # -ln P(run) under a geometric repeat model is Exp(1): its tail, calibrated per stream
        self.cal_stuck = TailCalibrator(q=0.135, q2=0.0067, m_min=1.0, min_n=calibrate_points)

    # --- the model ---------------------------------------------------------------------------

    def _value(self, x: float, t: int) -> float | None:
        """What the model sees: ``x``, or for a counter its increase per second."""
        if not self.counter:
            return x
        if self.last_raw is None or self.last_t is None or x < self.last_raw:
            return None
        return (x - self.last_raw) * 1000.0 / max(t - self.last_t, 1)

    def _step_floor(self) -> float:
        """The smallest meaningful change of what the model sees: the value's resolution, or for
        a counter the rate one step of it makes over the stream's usual interval (a 1 Wh
        register read every 5 minutes moves in steps of 1/300 Wh/s, not 1 Wh/s)."""
        if self.counter and self.interval > 0:
            return self.resolution * 1000.0 / self.interval
        return self.resolution

    def _sigma(self) -> float:
        floor = max(self._step_floor(), self.floor_frac * _ABS_TO_SIGMA * self.long_dev, 1e-12)
        return max(_ABS_TO_SIGMA * self.scale, floor)

    def p_alarm(self) -> float:
        return alarm_probability(self.per_week, self.interval or 1000.0)

    def offset(self, t: int) -> tuple[int, float]:
        """The day bin of ``t`` and its seasonal offset (0 until the stream is a day old)."""
        if not self.bins:
            return 0, 0.0
        b = (t % DAY_MS) * self.bins // DAY_MS
        active = self.first_t is not None and t - self.first_t >= DAY_MS
        return b, self.season[b] if active else 0.0

    def _assess(self, x: float, off: float = 0.0) -> tuple[Assessment, float, float, float]:
        v = x - off  # deseasonalised
        sigma = self._sigma()
        z = (v - self.level) / sigma
        recent = self.recent + self.shift_alpha * (v - self.recent)
        shift_z = (
            abs(recent - self.ref) / sigma / math.sqrt(self.shift_alpha / (2 - self.shift_alpha))
        )
        run = self.run + 1 if x == self.last else 0  # a stuck sensor repeats its raw value
        ready = self.n >= self.warmup
        stuck_stat = run * -math.log(min(max(self.repeat, 0.01), 0.999))
        p_stuck = self.cal_stuck.p(stuck_stat)
        a = Assessment(
            value=x,
            predicted=self.level + off,
            sigma=sigma,
            p_level=self.cal_level.p(abs(z)) if ready else 1.0,
            p_shift=self.cal_shift.p(shift_z) if ready else 1.0,
            p_stuck=p_stuck if ready else 1.0,
            ready=ready,
        )
        return a, z, shift_z, stuck_stat

    def assess(self, x: float, t: int) -> Assessment:
        """Judge ``x`` at ``t`` without learning it."""
        v = self._value(x, t)
        if v is None:
            return Assessment(x, x, self._sigma(), 1.0, 1.0, 1.0, False)
        return self._assess(v, self.offset(t)[1])[0]

    def see(self, x: float, t: int) -> Assessment:
        """Judge ``x`` without learning it (a value known to be bad); the clock moves on."""
        a = self.assess(x, t)
        self.last_raw, self.last_t = x, t
        return a

    def step(self, x: float, t: int) -> Assessment:
        """Judge ``x`` at ``t``, then learn it (every point is learned, robustly).

        The AI worker's hot path (one call per metric of every reading): ``_value``, ``offset``,
        ``_assess`` (with ``_sigma``) and ``_learn`` (with ``p_alarm``) written out once with
        their attributes in locals. Their arithmetic, operation for operation, so every figure is
        bit-identical (``tests/ai/test_joint.py`` checks it against :meth:`assess` and the
        methods): ``max(a, b)`` is written ``b if b > a else a`` and ``min(a, b)`` as
        ``b if b < a else a``, which is what the builtins return (NaN included)."""
        last_t = self.last_t
        if not self.counter:
            v: float | None = x
        elif self.last_raw is None or last_t is None or x < self.last_raw:
            v = None
        else:
            d = t - last_t
            v = (x - self.last_raw) * 1000.0 / (d if d > 1 else 1)
        interval = self.interval
        if last_t is not None and t > last_t:
            dt = float(t - last_t)
            interval = dt if interval == 0 else interval + 0.05 * (dt - interval)
            self.interval = interval
        self.last_raw, self.last_t = x, t
        first_t = self.first_t
        if first_t is None:
            first_t = self.first_t = t
        if v is None:
            return Assessment(x, x, self._sigma(), 1.0, 1.0, 1.0, False)
        bins = self.bins
        if bins:
            b = (t % DAY_MS) * bins // DAY_MS
            off = self.season[b] if t - first_t >= DAY_MS else 0.0
        else:
            b, off = 0, 0.0
        # judge (``_assess``)
        vd = v - off  # deseasonalised
        long_dev = self.long_dev
        floor = self.resolution  # ``_step_floor()``
        if self.counter and interval > 0:
            floor = floor * 1000.0 / interval
        f = self.floor_frac * _ABS_TO_SIGMA * long_dev
        if f > floor:
            floor = f
        if floor < 1e-12:
            floor = 1e-12
        sigma = _ABS_TO_SIGMA * self.scale
        if floor > sigma:
            sigma = floor
        level = self.level
        z = (vd - level) / sigma
        shift_alpha = self.shift_alpha
        recent = self.recent + shift_alpha * (vd - self.recent)
        shift_z = abs(recent - self.ref) / sigma / math.sqrt(shift_alpha / (2 - shift_alpha))
        last = self.last
        same = v == last
        run = self.run + 1 if same else 0  # a stuck sensor repeats its raw value
        n = self.n
        warmup = self.warmup
        ready = n >= warmup
        rep = self.repeat
        if rep < 0.01:
            rep = 0.01
        if rep > 0.999:
            rep = 0.999
        # ``run * -log(rep)``: 0.0 for run 0 (-log of a clamped rate is positive and finite)
        stuck_stat = run * -math.log(rep) if run or rep != rep else 0.0
        # the calibrators judge, and from the second point past warm-up learn (below, in
        # ``_learn``, after nothing else reads them): one call each when both are due
        learns = ready and n >= 1
        if learns:
            p_level = self.cal_level.p_learn(abs(z))
            p_shift = self.cal_shift.p_learn(shift_z)
            p_stuck = self.cal_stuck.p_learn(stuck_stat)
        elif ready:
            p_level = self.cal_level.p(abs(z))
            p_shift = self.cal_shift.p(shift_z)
            p_stuck = self.cal_stuck.p(stuck_stat)
        else:
            p_level = p_shift = p_stuck = 1.0
        a = _new_tuple(Assessment, (v, level + off, sigma, p_level, p_shift, p_stuck, ready))
        residual = vd - level
        # learn (``_learn``)
        n += 1
        self.n = n
        self.run = run
        self.last = v
        if n == 1:
            self.level = self.long_mean = self.recent = self.ref = vd
            return a
        inv = 1.0 / n
        w = inv if inv > 0.01 else 0.01
        self.repeat += w * ((1.0 if same else 0.0) - self.repeat)
        w = inv if inv > 0.001 else 0.001
        long_mean = self.long_mean + w * (vd - self.long_mean)
        self.long_mean = long_mean
        long_dev = long_dev + w * (abs(vd - long_mean) - long_dev)
        self.long_dev = long_dev
        self.recent = recent
        huber = self.huber
        wide = _ABS_TO_SIGMA * long_dev
        if not wide > sigma:
            wide = sigma
        h = huber * wide if (p_level < 1e-3 and n > warmup) else math.inf
        r = residual if residual < h else h
        if not r > -h:
            r = -h
        w = self.alpha
        self.level = level + (inv if inv > w else w) * r
        w = self.beta
        self.scale += (inv if inv > w else w) * (abs(r) - self.scale)
        hr = huber * sigma if n > warmup else math.inf
        ref = self.ref
        dr = vd - ref
        c = dr if dr < hr else hr
        if not c > -hr:
            c = -hr
        w = self.ref_alpha
        self.ref = ref + (inv if inv > w else w) * c
        if n > warmup:  # (the calibrators have learned: ``learns`` above)
            # ``p_alarm``
            iv = interval or 1000.0
            pa = self.per_week * (iv if not iv < 1.0 else 1.0) / WEEK_MS
            if pa < 1e-12:
                pa = 1e-12
            if pa > 0.05:
                pa = 0.05
            if p_shift * 3 <= pa:
                if self.shift_since is None:
                    self.shift_since = t
                elif t - self.shift_since >= self.rebaseline_ms:
                    # a confirmed change: the new regime is the baseline
                    self.level = self.ref = self.recent
                    self.shift_since = None
                    self.changes += 1
            else:
                self.shift_since = None
        if bins:
            # the time-of-day season learns what recurs at this time of day, at a pace of
            # ``gamma`` per day whatever the sampling rate; it applies from the second day on
            bin_n = self.bin_n
            bin_n[b] += 1
            g = 1.0 / bin_n[b]
            g2 = self.gamma * (interval if not interval < 1.0 else 1.0) * bins / DAY_MS
            if g2 > g:
                g = g2
            if p_level < 1e-3:
                h = huber * wide
                residual = residual if residual < h else h
                if not residual > -h:
                    residual = -h
            season = self.season
            season[b] += (1.0 if g > 1.0 else g) * (residual + off - season[b])
        return a

    def _step_reference(self, x: float, t: int) -> Assessment:
        """:meth:`step` as first written, from the methods (the reference the tests compare the
        written-out hot path with: every figure and every state bit-identical)."""
        v = self._value(x, t)
        if self.last_t is not None and t > self.last_t:
            dt = float(t - self.last_t)
            self.interval = (
                dt if self.interval == 0 else self.interval + 0.05 * (dt - self.interval)
            )
        self.last_raw, self.last_t = x, t
        if self.first_t is None:
            self.first_t = t
        if v is None:
            return Assessment(x, x, self._sigma(), 1.0, 1.0, 1.0, False)
        b, off = self.offset(t)
        a, z, shift_z, stuck_stat = self._assess(v, off)
        residual = v - off - self.level
        self._learn(v - off, t, a, z, shift_z, stuck_stat)
        if self.bins and self.n > 1:
            self.bin_n[b] += 1
            g = max(1.0 / self.bin_n[b], self.gamma * max(self.interval, 1.0) * self.bins / DAY_MS)
            if a.p_level < 1e-3:
                h = self.huber * max(a.sigma, _ABS_TO_SIGMA * self.long_dev)
                residual = max(-h, min(h, residual))
            self.season[b] += min(g, 1.0) * (residual + off - self.season[b])
        return a

    def _learn(
        self, v: float, t: int, a: Assessment, z: float, shift_z: float, stuck_stat: float
    ) -> None:
        """What :meth:`step` learns, as first written (the reference the tests compare with)."""
        self.n += 1
        repeated = 1.0 if a.value == self.last else 0.0
        self.run = self.run + 1 if a.value == self.last else 0
        self.last = a.value
        if self.n == 1:
            self.level = self.long_mean = self.recent = self.ref = v
            return
        self.repeat += max(0.01, 1.0 / self.n) * (repeated - self.repeat)
        self.long_mean += max(0.001, 1.0 / self.n) * (v - self.long_mean)
        self.long_dev += max(0.001, 1.0 / self.n) * (abs(v - self.long_mean) - self.long_dev)
        self.recent += self.shift_alpha * (v - self.recent)
        sigma = a.sigma
        # Huber: a residual is clipped to ``huber`` sigmas only when this stream's own calibrated
        # tail says it is rare (p < 1e-3), never in warm-up: the scale of a zero-heavy stream
        # (three quarters of its residuals exactly 0) cannot collapse on itself.
        # The clip is also never below ``huber`` long-run sigmas (what is common over the long run).
        wide = max(sigma, _ABS_TO_SIGMA * self.long_dev)
        h = self.huber * wide if (a.p_level < 1e-3 and self.n > self.warmup) else math.inf
        r = max(-h, min(h, v - self.level))
        self.level += max(self.alpha, 1.0 / self.n) * r
        self.scale += max(self.beta, 1.0 / self.n) * (abs(r) - self.scale)
        hr = self.huber * sigma if self.n > self.warmup else math.inf
        self.ref += max(self.ref_alpha, 1.0 / self.n) * max(-hr, min(hr, v - self.ref))
        if self.n <= self.warmup:
            return
        self.cal_level.learn(abs(z))
        self.cal_shift.learn(shift_z)
        self.cal_stuck.learn(stuck_stat)
        if a.p_shift * 3 <= self.p_alarm():
            if self.shift_since is None:
                self.shift_since = t
            elif t - self.shift_since >= self.rebaseline_ms:
                # a confirmed change: the new regime is the baseline
                self.level = self.ref = self.recent
                self.shift_since = None
                self.changes += 1
        else:
            self.shift_since = None

    # --- the Detector interface -------------------------------------------------------------

    def score_one(self, x: float, t: int) -> float:
        a = self.assess(x, t)
        return score(a.p, self.p_alarm()) if a.ready else 0.0

    def learn_one(self, x: float, t: int) -> None:
        self.step(x, t)

    def half_width(self) -> float:
        """Half the normal range around the level: where the level check reaches the alarm."""
        cal = self.cal_level
        k = cal.u + cal.m * math.log(cal.q / (self.p_alarm() / 3))
        return max(k, 0.0) * self._sigma()

    def expected(self, x: float, t: int) -> Expected:
        a = self.assess(x, t)
        half = self.half_width()
        return Expected(a.predicted, a.predicted - half, a.predicted + half, a.check)

    def to_state(self) -> dict[str, Any]:
        return (
            {"kind": self.kind}
            | {f: getattr(self, f) for f in (*self._PARAMS, *self._STATE)}
            | {c: getattr(self, c).to_state() for c in ("cal_level", "cal_shift", "cal_stuck")}
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RobustStream:
        d = cls(**{f: state[f] for f in cls._PARAMS})
        for f in cls._STATE:
            setattr(d, f, state[f])
        for c in ("cal_level", "cal_shift", "cal_stuck"):
            setattr(d, c, TailCalibrator.from_state(state[c]))
        if d.cal_level.prior2 == _OLD_LEVEL_FAR_PRIOR:
            # saved before the level check's far tail was learned faster: it is from here on
            # (the estimate so far is kept; only the weight of the prior in later updates moves)
            d.cal_level.prior2 = LEVEL_FAR_PRIOR
        return d
