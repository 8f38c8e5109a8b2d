"""The atheris fuzzer over body parsing and reading validation, for a bounded time.

It runs as a subprocess (atheris instruments what it imports; that must not leak into pytest):
``CHAINSENSE_FUZZ_SECONDS`` (20 by default here; ``make fuzz`` runs longer). A failing input is
written to the work dir and the test fails with libFuzzer's report; the number of executions is
printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SECONDS = int(os.environ.get("CHAINSENSE_FUZZ_SECONDS", "20"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SECONDS + 900)]


def test_the_fuzzer_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_input.py"),
            f"-max_total_time={SECONDS}",
            "-print_final_stats=1",
            "-max_len=4096",
            "-timeout=10",
            f"-dict={HERE / 'json.dict'}",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
            str(HERE / "seeds"),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 600,  # importing under instrumentation is slow on a loaded machine
        check=False,
    )
    report = "\n".join(
        line for line in done.stderr.splitlines() if not line.startswith("INFO: Instrumenting")
    )
    assert done.returncode == 0, report[-5000:]
    executions = int(re.search(r"stat::number_of_executed_units: (\d+)", report).group(1))  # type: ignore[union-attr]
    assert executions > 1000, report[-2000:]
    print(f"\natheris: {executions} executions in {SECONDS} s, no crash")
