"""/metrics with several worker processes (``PROMETHEUS_MULTIPROC_DIR``): a worker that died
(``kill -9``, replaced by the process manager) no longer shows as a live leader, while its
counters still count. Real processes write the samples; each runs in its own interpreter
because the metrics are built once per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_WORKER = """
import os, sys
from chainsense.observability.metrics import exposition, metrics
m = metrics()
m.leader.labels(role="anchorer").set(float(sys.argv[1]))
m.batches_sealed.inc()
print(os.getpid())
if sys.argv[2] == "expose":
    sys.stdout.write(exposition()[0].decode())
"""


def _worker(path: Path, leader: int, expose: bool) -> tuple[int, str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(leader), "expose" if expose else "-"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pid, _, text = done.stdout.partition("\n")
    return int(pid), text


def test_a_dead_workers_leader_gauge_is_dropped_and_its_counters_kept(tmp_path: Path) -> None:
    dead, _ = _worker(tmp_path, leader=1, expose=False)  # led, then died without a word
    assert (tmp_path / f"gauge_liveall_{dead}.db").exists()
    live, text = _worker(tmp_path, leader=0, expose=True)
    leader = [line for line in text.splitlines() if line.startswith("chainsense_leader{")]
    assert leader == [f'chainsense_leader{{pid="{live}",role="anchorer"}} 0.0'], text
    assert not (tmp_path / f"gauge_liveall_{dead}.db").exists()
    assert "chainsense_batches_sealed_total 2.0" in text  # both processes' counts
