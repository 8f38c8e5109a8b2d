"""``serve --workers 2`` runs the dev chain as one ``chainsense chain up`` process for every
worker. Its state saves happen there, so before the workers read its report their ``/readyz``
had no ``dev_chain_state`` check at all: a dev chain whose saves stopped looked ready.

Here ``chain up`` is stopped (SIGSTOP: a hung process, as a full disk stops its reports too):
the workers' ``/readyz`` turns 503 naming it and the metric drops to 0; after SIGCONT both
recover. (The metric was 0 for good under ``--workers`` before: ``chain up`` wrote its initial
0 into the workers' multiprocess metrics, and the minimum over live processes was shown.)"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.provenance.test_crash_leader import Cluster, cluster_on_a_new_database

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]


def _chain_up_pid(root: int) -> int:
    """The ``chainsense chain up`` process among ``root``'s children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if ppid == root and b"chain" in cmdline and b"up" in cmdline:
                return int(entry.name)
    raise AssertionError(f"no `chainsense chain up` child of {root}")


def _until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if found := check():
                return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.5)


def _dev_chain_state(c: Cluster) -> tuple[int, str]:
    answer = httpx.get(c.url + "/readyz", timeout=10)
    return answer.status_code, answer.json()["checks"].get("dev_chain_state", "")


def _dump_ok(c: Cluster) -> float | None:
    for line in httpx.get(c.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("chainsense_dev_chain_state_dump_ok "):
            return float(line.split()[-1])
    return None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with cluster_on_a_new_database(tmp_path, "chainsense_test_workers_chain") as running:
        yield running


@pytest.mark.timeout(300)
def test_workers_see_the_state_saves_of_the_dev_chain_they_share(cluster: Cluster) -> None:
    cluster.start()
    assert cluster.proc is not None
    status, line = _dev_chain_state(cluster)
    assert status == 200
    assert line.startswith("ok"), line
    assert "chain up" in line or "first save pending" in line, line
    _until("the metric says the saves work", lambda: _dump_ok(cluster) == 1.0, 30)

    chain_up = _chain_up_pid(cluster.proc.pid)
    os.kill(chain_up, signal.SIGSTOP)
    try:
        status, line = _until(
            "readyz 503 naming the dev chain's process",
            lambda: (s := _dev_chain_state(cluster))[0] == 503 and s,
            40,
        )
        assert line.startswith("failing: the dev chain's process"), line
        assert "last reported" in line, line
        _until("the metric says the saves fail", lambda: _dump_ok(cluster) == 0.0, 30)
    finally:
        os.kill(chain_up, signal.SIGCONT)
    _until("ready again", lambda: _dev_chain_state(cluster)[0] == 200, 40)
    _until("the metric recovers", lambda: _dump_ok(cluster) == 1.0, 30)
