"""Anchoring against a slow node: does the backlog stay bounded?

    .venv/bin/python bench/anchor_slow.py [--delays 0,0.5,2] [--seconds 60] [--rate 50]

A real Anvil (contracts deployed) behind a JSON-RPC proxy that answers every HTTP round trip
``delay`` seconds late (tests/provenance/_slow_rpc.py; a JSON-RPC batch is one round trip). The
anchorer runs on its default policy (seal every 2 s or 2000 readings) against a SQLite store into
which ``--rate`` readings/s are stored for ``--seconds``. Per delay: batches sealed and anchored,
anchored per minute, the sealed backlog (largest seen, at the end), the round trips per anchored
batch and the JSON-RPC calls by method. The reference is the same run with no delay.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.provenance.slow_node import run_slow_node
from tests.support import deployed_chain


async def _main(delays: list[float], seconds: float, rate: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with deployed_chain(Path(tmp) / "chain") as chain:
            for i, delay in enumerate(delays):
                run_dir = Path(tmp) / f"run{i}"
                run_dir.mkdir()
                run = await run_slow_node(chain, run_dir, delay=delay, seconds=seconds, rate=rate)
                print(run.line(), flush=True)
    print(
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--delays", default="0,0.5,2", help="seconds per round trip, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="readings/s stored")
    args = parser.parse_args()
    asyncio.run(_main([float(d) for d in args.delays.split(",")], args.seconds, args.rate))


if __name__ == "__main__":
    main()
