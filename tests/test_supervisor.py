"""uvicorn's worker health check with ChainSense's :class:`~chainsense.supervisor.Worker`: a worker
killed while a ping is out is seen dead at once, where uvicorn's own check waits its whole
timeout (the parent holds both ends of the pipe, so the death closes nothing). Real spawned
worker processes; the ping is caught in flight by stopping the worker (SIGSTOP) first."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from uvicorn import Config
from uvicorn.supervisors import multiprocess

from chainsense.supervisor import Worker

pytestmark = pytest.mark.slow


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """An ASGI app that does nothing (the worker only has to start)."""


def _killed_during_a_ping(kind: type[multiprocess.Process], timeout: float) -> float:
    """Start a worker, stop it, send a health check, kill it; seconds the check took."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = Config("tests.test_supervisor:app", lifespan="off", log_level="warning")
        worker = kind(config, [sock])
        worker.start()
        try:
            # one check at a time, answered: no answer to an earlier check is left in the pipe
            assert worker.ping(120), "the worker did not start"
            pid = worker.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            while _state(pid) != "T":  # the stop takes effect asynchronously
                time.sleep(0.01)
            took: list[float] = []

            def check() -> None:
                t0 = time.monotonic()
                assert worker.ping(timeout) is False
                took.append(time.monotonic() - t0)

            pinging = threading.Thread(target=check)
            pinging.start()
            time.sleep(0.3)  # the ping is out, unanswered
            os.kill(pid, signal.SIGKILL)
            pinging.join(timeout + 10)
            return took[0] - 0.3
        finally:
            if worker.process.is_alive():
                worker.kill()
            worker.join()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_a_worker_killed_during_a_health_check_is_seen_dead_at_once() -> None:
    assert _killed_during_a_ping(Worker, timeout=60) < 1.0
    # uvicorn's own check, for reference: it waits out its timeout
    assert _killed_during_a_ping(multiprocess.Process, timeout=3) >= 2.5
