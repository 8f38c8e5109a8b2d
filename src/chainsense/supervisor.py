"""uvicorn's worker supervisor, with a dead worker noticed at once (``serve --workers N``).

uvicorn's supervisor checks each worker every 0.5 s: is the process alive, then a ping over a
pipe, waiting up to ``timeout_worker_healthcheck`` seconds for the answer. ChainSense sets that
timeout to 60 s, because a worker on a busy machine can take that long to import and open its
platform. But the parent holds both ends of the pipe, so a worker killed while a ping is out
(``kill -9``, the OOM killer) never closes it: the supervisor waited the whole 60 s before it
saw the death, reaped the process and started a replacement (measured: 59 s after a ``kill -9``
under load, with one worker serving alone meanwhile and the dead worker's gauges still in
``/metrics``). :class:`Worker` waits for the answer in 0.1 s steps and gives up as soon as the
process has exited, so the replacement starts within about half a second; a live worker that is
slow to answer still has the full timeout.
"""

from __future__ import annotations

import pickle
import time

from uvicorn.supervisors import multiprocess

__all__ = ["Worker", "install"]

_STEP_S = 0.1


class Worker(multiprocess.Process):
    """One uvicorn worker process whose health check notices its death within ``_STEP_S``."""

    def _healthcheck(self, timeout: float) -> bool | None:
        deadline = time.monotonic() + timeout
        try:
            self.parent_conn.send(b"ping")
            while not self.parent_conn.poll(min(_STEP_S, max(0.0, deadline - time.monotonic()))):
                if not self.process.is_alive() or time.monotonic() >= deadline:
                    return None
            started: bool = self.parent_conn.recv()
            return started
        except (OSError, EOFError, pickle.UnpicklingError):
            return None


def install() -> None:
    """Make uvicorn's supervisor (in this, the parent process) start :class:`Worker` s."""
    multiprocess.Process = Worker  # type: ignore[misc]
