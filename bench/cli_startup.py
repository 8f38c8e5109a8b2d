"""How long the ``chainsense`` command line takes to answer, hyperfine-style.

Each command is run ``--runs`` times (after ``--warmup`` untimed runs) as a fresh process, and
the mean, standard deviation and minimum wall time are printed, with the ratio of the mean to
the mean of ``python -c pass`` measured in the same run (the interpreter's own start: no CLI can
beat it). Runs are interleaved (one of each command per round) so a change in machine load
affects every command alike.

``--baseline-src DIR`` also times the CLI of another source tree (e.g. an older commit exported
with ``git archive <commit> | tar -x -C DIR``) with the same interpreter and libraries.

    .venv/bin/python bench/cli_startup.py [--runs 10] [--baseline-src /tmp/base]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "chainsense --help": ["-m", "chainsense", "--help"],
    "chainsense --version": ["-m", "chainsense", "--version"],
    "chainsense verify --help": ["-m", "chainsense", "verify", "--help"],
    "chainsense device --help": ["-m", "chainsense", "device", "--help"],
}


def _time(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--baseline-src", help="Also time the CLI of this source tree's src/")
    opts = parser.parse_args()

    env = dict(os.environ, COLUMNS="80")
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        name: (args, env) for name, args in COMMANDS.items()
    }
    if opts.baseline_src:
        base_env = dict(env, PYTHONPATH=os.path.join(opts.baseline_src, "src"))
        for name in ("chainsense --help", "chainsense verify --help"):
            cases[f"baseline: {name}"] = (COMMANDS[name], base_env)

    for args, case_env in cases.values():
        for _ in range(opts.warmup):
            _time(args, case_env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(opts.runs):
        for name, (args, case_env) in cases.items():
            times[name].append(_time(args, case_env))

    reference = statistics.mean(times["python -c pass"])
    load = os.getloadavg()
    print(f"{opts.runs} runs each, interleaved; load average {load[0]:.2f} {load[1]:.2f}")
    print(f"{'command':36} {'mean':>8} {'± sd':>8} {'min':>8} {'x python -c pass':>17}")
    for name, samples in times.items():
        mean = statistics.mean(samples)
        sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
        print(
            f"{name:36} {mean * 1000:7.0f}ms {sd * 1000:7.0f}ms {min(samples) * 1000:7.0f}ms "
            f"{mean / reference:16.1f}x"
        )


if __name__ == "__main__":
    main()
