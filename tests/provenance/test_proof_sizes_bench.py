"""bench/proof_sizes.py (the proof-size table of docs/proof-format.md section 8) still runs on
the current proof code: it had broken when the bundle builder started returning documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.node
def test_the_proof_size_bench_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "proof_sizes.py"), "--batch", "64"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for line in ("OpenTimestamps .ots, complete", "Chainpoint v4, binary", "ChainSense v2, JSON"):
        assert line in done.stdout, done.stdout
