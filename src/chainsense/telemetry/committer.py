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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from chainsense.observability.metrics import metrics
from chainsense.store import InsertResult, NewReading

__all__ = ["CommitStats", "GroupCommitter"]

InsertBatch = Callable[[Sequence[NewReading]], Awaitable[list[InsertResult]]]


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
        self, insert_batch: InsertBatch, *, max_rows: int = 10_000, window_s: float = 0.0
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

    async def submit(self, rows: Sequence[NewReading]) -> list[InsertResult]:
        """Commit ``rows`` (with whatever else is waiting); one result per row, in order.
        Returns only after the COMMIT that holds them."""
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        entry = _Waiting(rows, loop.create_future())
        entry.future.add_done_callback(_retrieve)  # a request that gave up logs nothing
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
        stats = self.stats
        stats.commits += 1
        stats.rows += len(rows)
        stats.requests += len(group)
        stats.last_group_rows = len(rows)
        m = metrics()
        m.commit_duration.observe(elapsed)
        m.commit_batch_readings.observe(len(rows))
        m.commit_batch_requests.observe(len(group))
        for observe in stats.observers:
            observe(len(group), len(rows), elapsed)


def _fail(entry: _Waiting, exc: BaseException) -> None:
    if not entry.future.done():
        entry.future.set_exception(exc)


def _retrieve(future: asyncio.Future[list[InsertResult]]) -> None:
    if not future.cancelled():
        future.exception()
