"""A circuit breaker for one RPC endpoint: an outage costs no request time.

::

    closed ──(``failures`` failed calls in a row)──▶ open ──(``cooldown`` s)──▶ half-open
       ▲                                               ▲                            │
       └────────────(the probe succeeds)───────────────┼────────────────────────────┤
                                                       └──(the probe fails)─────────┘

- **closed**: every call goes to the node. A call *fails* when the node does not answer (refused,
  reset, timed out: :class:`~chainsense.errors.ChainUnavailableError`); a call the node answers,
  even with an error or a revert, is a success.
- **open**: every call fails at once with ``ChainUnavailableError`` ("circuit open"), without
  touching the network.
- **half-open**: after ``cooldown`` seconds the next call goes through as the one probe; the calls
  made while it is in flight still fail at once. Its success closes the circuit; its failure opens
  it for another ``cooldown``.

A call cancelled by its caller (a ``/readyz`` bound, a shutdown) counts neither way, except through
:meth:`ChainClient.probe`, whose time bound counts as a failure: the probes of ``/readyz`` and the
metrics sampler open the circuit on a black-holed node within seconds even when nothing else calls
the chain.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BreakerOpen", "BreakerState", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerOpen:
    """Why a call was refused without being made."""

    last_error: str
    retry_in_s: float
    probing: bool

    def __str__(self) -> str:
        if self.probing:
            return f"circuit open, a probe is in flight (last error: {self.last_error})"
        wait = f"{self.retry_in_s:.1f}"
        return f"circuit open, next probe in {wait} s (last error: {self.last_error})"


class CircuitBreaker:
    """Counts failed calls in a row and refuses calls while the endpoint is known to be down.

    ``failures=0`` turns it off (every call goes through). ``on_change`` is called with the new
    state and the last error on every transition, ``on_refuse`` for every call refused without
    being made (metrics, logs)."""

    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown: float = 5.0,
        on_change: Callable[[BreakerState, str | None], None] | None = None,
        on_refuse: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.on_change = on_change
        self.on_refuse = on_refuse
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.opened_at: float | None = None
        self._probe_in_flight = False
        self.short_circuited = 0
        """Calls refused without being made, since this breaker was created."""

    def before(self) -> BreakerOpen | None:
        """Called before a call: None to make it (and then exactly one of :meth:`success`,
        :meth:`failure` or :meth:`release` after it), or why it must fail at once."""
        if self.state is BreakerState.CLOSED or self.threshold <= 0:
            return None
        assert self.opened_at is not None
        if self.state is BreakerState.OPEN:
            wait = self.opened_at + self.cooldown - self._clock()
            if wait > 0:
                return self._refuse(wait, probing=False)
            self._move(BreakerState.HALF_OPEN)
        if self._probe_in_flight:
            return self._refuse(0.0, probing=True)
        self._probe_in_flight = True
        return None

    def _refuse(self, wait: float, *, probing: bool) -> BreakerOpen:
        self.short_circuited += 1
        if self.on_refuse is not None:
            self.on_refuse()
        return BreakerOpen(self.last_error or "unknown", max(0.0, wait), probing)

    def success(self) -> None:
        self._probe_in_flight = False
        self.consecutive_failures = 0
        if self.state is not BreakerState.CLOSED:
            self.opened_at = None
            self._move(BreakerState.CLOSED)

    def failure(self, reason: str) -> None:
        self._probe_in_flight = False
        self.consecutive_failures += 1
        self.last_error = reason
        if self.threshold <= 0:
            return
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.consecutive_failures >= self.threshold
        ):
            self.opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def release(self) -> None:
        """The call was cancelled before the node's answer: it counts neither way."""
        self._probe_in_flight = False

    def retry_in(self) -> float:
        """Seconds until the next probe may go (0 unless open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - self._clock())

    def describe(self) -> str:
        """One line for ``/readyz`` and logs."""
        if self.state is BreakerState.CLOSED:
            return "closed"
        if self.state is BreakerState.HALF_OPEN:
            return f"half-open, probing (last error: {self.last_error})"
        return (
            f"open after {self.consecutive_failures} failed calls, next probe in "
            f"{self.retry_in():.1f} s (last error: {self.last_error})"
        )

    def _move(self, state: BreakerState) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(state, self.last_error)
