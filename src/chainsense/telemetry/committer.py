"""Group commit: concurrent requests' readings go to the store in one transaction.

Committing per request cannot keep up with devices that send one reading each (one fsync, one
write lock, several round trips per reading). :class:`GroupCommitter` is the single writer path
of the ingest pipeline: every request hands it its checked rows with :meth:`submit` and waits;
one drain task takes everything that is waiting (up to ``max_rows``), concatenated in arrival
order, and commits it with one ``insert_batch`` call; then each request gets its own slice of the
results. While a commit is in flight, new requests queue up for the next one, so the group grows
with the load by itself and an idle platform adds no delay. ``window_s`` optionally holds the
first request of a group for a short while (or until ``max_rows`` are waiting, whichever comes
first) to gather more.

Concatenating requests in arrival order gives every row exactly the outcome it would get if the
requests had been committed one after the other in that order (``insert_batch`` decides each
row against the database and the earlier rows of the same call). A request is answered only
after the commit that holds its rows: a ``stored`` result is durable.

If the group commit fails with ValueError (one request's rows are malformed), each request is
retried alone, so one bad request cannot fail the others. Any other error (the store is down)
goes to every request of the group.

No task outlives the work: the drain task starts when rows arrive and ends when none wait.

On SQLite (a :class:`ThreadWriter` given, no window) the drain runs on the store's writer thread
instead of the event loop: each job there takes what is waiting, commits it and hands the
results to the loop, then queues the next job if rows wait (behind the store's other writes).
Measured under 200 one-reading devices, the loop-driven drain spent more time waiting for the
busy event loop (to resume after a commit, then to start the next) than committing; now one
commit follows the other at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chainsense.observability.metrics import metrics
from chainsense.store import InsertResult, NewReading

__all__ = ["CommitStats", "GroupCommitter", "ThreadWriter"]

InsertBatch = Callable[[Sequence[NewReading]], Awaitable[list[InsertResult]]]


class ThreadWriter(Protocol):
    """A store whose writes run on one thread of its own (store.readings on SQLite)."""

    def submit_to_writer(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the writer thread, after the writes queued before it."""

    def insert_batch_in_writer(self, rows: Sequence[NewReading]) -> list[InsertResult]:
        """``insert_batch``, called on the writer thread."""
        ...


@dataclass
class CommitStats:
    """Counters a metrics exporter can read (one committer per process)."""

    commits: int = 0
    rows: int = 0
    requests: int = 0
    last_group_rows: int = 0
    observers: list[Callable[[int, int, float], None]] = field(default_factory=list)
    """Called after each commit with (requests, rows, seconds)."""


@dataclass
class _Waiting:
    rows: Sequence[NewReading]
    future: asyncio.Future[list[InsertResult]]


class GroupCommitter:
    """The one writer of readings in this process; see the module docstring."""

    def __init__(
        self,
        insert_batch: InsertBatch,
        *,
        max_rows: int = 10_000,
        window_s: float = 0.0,
        thread_writer: ThreadWriter | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self._insert = insert_batch
        self.max_rows = max_rows
        self.window_s = window_s
        self.stats = CommitStats()
        self._waiting: list[_Waiting] = []
        self._waiting_rows = 0
        self._drain: asyncio.Task[None] | None = None
        self._more = asyncio.Event()
        self._writer = thread_writer if window_s <= 0 else None
        self._lock = threading.Lock()  # _waiting, between the loop and the writer thread
        self._scheduled = False  # a drain job is queued or running on the writer thread

    async def submit(self, rows: Sequence[NewReading]) -> list[InsertResult]:
        """Commit ``rows`` (with whatever else is waiting); one result per row, in order.
        Returns only after the COMMIT that holds them."""
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        entry = _Waiting(rows, loop.create_future())
        entry.future.add_done_callback(_retrieve)  # a request that gave up logs nothing
        if self._writer is not None:
            with self._lock:
                self._waiting.append(entry)
                self._waiting_rows += len(rows)
                start, self._scheduled = not self._scheduled, True
            if start:
                self._schedule(loop)
            return await asyncio.shield(entry.future)
        self._waiting.append(entry)
        self._waiting_rows += len(rows)
        if self._waiting_rows >= self.max_rows:
            self._more.set()
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._run(), name="group-commit")
        # shield: a request that gives up waiting does not cancel the commit of the others
        return await asyncio.shield(entry.future)

    def _take(self) -> list[_Waiting]:
        """The next group: at least one request, then whole requests up to ``max_rows``."""
        group: list[_Waiting] = []
        count = 0
        while self._waiting and (not group or count + len(self._waiting[0].rows) <= self.max_rows):
            entry = self._waiting.pop(0)
            group.append(entry)
            count += len(entry.rows)
        self._waiting_rows -= count
        return group

    async def _run(self) -> None:
        while self._waiting:
            if self.window_s > 0 and self._waiting_rows < self.max_rows:
                self._more.clear()
                try:
                    async with asyncio.timeout(self.window_s):
                        await self._more.wait()
                except TimeoutError:
                    pass
            group = self._take()
            await self._commit(group)

    async def _commit(self, group: list[_Waiting]) -> None:
        rows = [row for entry in group for row in entry.rows]
        t0 = time.perf_counter()
        try:
            results = await self._insert(rows)
        except ValueError as exc:
            if len(group) == 1:
                _fail(group[0], exc)
                return
            for entry in group:  # one malformed request must not fail the others
                await self._commit([entry])
            return
        except Exception as exc:  # the store is down: every request of the group hears it
            for entry in group:
                _fail(entry, exc)
            return
        except BaseException as exc:  # cancelled (shutdown): nobody waits forever
            for entry in group:
                _fail(entry, exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        elapsed = time.perf_counter() - t0
        start = 0
        for entry in group:
            end = start + len(entry.rows)
            if not entry.future.done():
                entry.future.set_result(results[start:end])
            start = end
        self._record(len(group), len(rows), elapsed)

    # --- the drain on the writer thread ---------------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._writer is not None
        try:
            self._writer.submit_to_writer(lambda: self._drain_once(loop))
        except RuntimeError as exc:  # the store is closed: nobody waits forever
            with self._lock:
                group, self._waiting, self._waiting_rows = self._waiting, [], 0
                self._scheduled = False
            error = asyncio.CancelledError() if loop.is_closed() else exc
            _in_loop(loop, _fail_all, group, error)

    def _drain_once(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the writer thread: commit one group, hand the results to the loop, and queue the
        next job when more rows wait (behind the other writes queued meanwhile)."""
        with self._lock:
            group = self._take()
        if group:
            outcomes: list[tuple[_Waiting, list[InsertResult] | BaseException]] = []
            commits: list[tuple[int, int, float]] = []
            self._insert_in_writer(group, outcomes, commits)
            _in_loop(loop, self._deliver, outcomes, commits)
        with self._lock:
            more = bool(self._waiting)
            self._scheduled = more
        if more:
            self._schedule(loop)

    def _insert_in_writer(
        self,
        group: list[_Waiting],
        outcomes: list[tuple[_Waiting, list[InsertResult] | BaseException]],
        commits: list[tuple[int, int, float]],
    ) -> None:
        assert self._writer is not None
        rows = [row for entry in group for row in entry.rows]
        t0 = time.perf_counter()
        try:
            results = self._writer.insert_batch_in_writer(rows)
        except ValueError as exc:
            if len(group) == 1:
                outcomes.append((group[0], exc))
                return
            for entry in group:  # one malformed request must not fail the others
                self._insert_in_writer([entry], outcomes, commits)
            return
        except Exception as exc:  # the store is down: every request of the group hears it
            outcomes.extend((entry, exc) for entry in group)
            return
        commits.append((len(group), len(rows), time.perf_counter() - t0))
        start = 0
        for entry in group:
            end = start + len(entry.rows)
            outcomes.append((entry, results[start:end]))
            start = end

    def _deliver(
        self,
        outcomes: list[tuple[_Waiting, list[InsertResult] | BaseException]],
        commits: list[tuple[int, int, float]],
    ) -> None:
        """In the loop: answer the requests of a group, count its commits."""
        for entry, outcome in outcomes:
            if isinstance(outcome, BaseException):
                _fail(entry, outcome)
            elif not entry.future.done():
                entry.future.set_result(outcome)
        for requests, rows, elapsed in commits:
            self._record(requests, rows, elapsed)

    def _record(self, requests: int, rows: int, elapsed: float) -> None:
        stats = self.stats
        stats.commits += 1
        stats.rows += rows
        stats.requests += requests
        stats.last_group_rows = rows
        m = metrics()
        m.commit_duration.observe(elapsed)
        m.commit_batch_readings.observe(rows)
        m.commit_batch_requests.observe(requests)
        for observe in stats.observers:
            observe(requests, rows, elapsed)


def _in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to answer
        loop.call_soon_threadsafe(fn, *args)


def _fail_all(group: list[_Waiting], exc: BaseException) -> None:
    for entry in group:
        _fail(entry, exc)


def _fail(entry: _Waiting, exc: BaseException) -> None:
    if not entry.future.done():
        entry.future.set_exception(exc)


def _retrieve(future: asyncio.Future[list[InsertResult]]) -> None:
    if not future.cancelled():
        future.exception()
