"""What the HTTP stack alone allows: bench/load.py's client against servers that do nothing.

    .venv/bin/python bench/http_floor.py [--devices 200] [--duration 10] [--workers 1,2]
                                         [--apps echo,check] [--batches 100] [--per-device 1000]

bench/load.py measures the platform against the same run's signature-recovery ceiling on all
cores. This bench asks how much of that ratio is left once the platform's own work is taken
away: the same client (raw asyncio HTTP/1.1, one keep-alive connection per device, every request
signed and encoded before the clock starts), the same uvicorn (uvloop, httptools, no access log),
and an app that does nothing but (``bench/_floor_app.py``):

- ``echo``: read the body, answer a fixed acknowledgement: the HTTP exchange alone;
- ``check``: parse the JSON, recover every signer and compare it with the claimed device,
  answer as the platform does; nothing stored, no AI worker, no anchorer, no rate limits, no
  logs, no metrics.

Scenarios: ``single`` (every device sends one reading per request, closed loop, ``--devices``
requests in flight) for each app, and batches of each ``--batches`` size (8 senders) for
``check``. Each with 1 and 2 uvicorn worker processes (``--workers``). The ratio is against
the ceiling measured before and after each scenario, as in bench/load.py.

If ``echo`` with every core is under a target's ratio, no work the platform could remove from
its own path reaches that target on this machine with this HTTP stack: the bound is measured,
not estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base
import load
from chainsense.identity import DeviceKey, Reading

DOMAIN = base.Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
BENCH_DIR = Path(__file__).resolve().parent


@contextlib.contextmanager
def _uvicorn(app: str, workers: int) -> Iterator[base.Server]:
    """uvicorn serving ``_floor_app:<app>`` on a free port, ready, stopped on exit."""
    port = base._free_port()
    env = os.environ | {
        "FLOOR_CHAIN_ID": str(DOMAIN.chain_id),
        "FLOOR_REGISTRY": DOMAIN.registry,
    }
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), f"_floor_app:{app}"]
    cmd += ["--port", str(port), "--workers", str(workers), "--no-access-log"]
    cmd += ["--log-level", "warning"]
    process = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not listen within 60 s")
            time.sleep(0.1)
        time.sleep(0.5 * workers)  # every worker process accepting, not just the first
        yield base.Server(process, f"http://127.0.0.1:{port}", "", Path(os.devnull))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _scenario(
    server: base.Server,
    name: str,
    streams: list[list[bytes]],
    per_request: int,
    sample: list[tuple[Reading, bytes]],
    duration: float,
) -> load.Result:
    res = load.Result(name)
    before = load._ceiling(sample, DOMAIN)
    cpu0 = load._tree_cpu_s(server.process.pid)
    asyncio.run(load._closed_loop(server.base_url, streams, [per_request], duration, res))
    cpu1 = load._tree_cpu_s(server.process.pid)
    res.ceiling_all = max(before, load._ceiling(sample, DOMAIN))
    if cpu0 is not None and cpu1 is not None:
        res.server_cpu_s = cpu1 - cpu0
    load._print_row(res)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--workers", type=base._ints, default=[1, 2])
    parser.add_argument("--apps", default="echo,check")
    parser.add_argument("--batches", type=base._ints, default=[100])
    parser.add_argument("--per-device", type=int, default=1000, help="pre-signed per scenario")
    parser.add_argument("--connections", type=int, default=8, help="batch senders")
    args = parser.parse_args(argv)
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    n = args.devices
    print(
        f"HTTP floor: {n} devices, {args.duration:g} s per scenario; machine: "
        f"{os.cpu_count()} cores, {base._cpu_model()}; load average {base._load()}",
        flush=True,
    )
    keys = [DeviceKey(os.urandom(32)) for _ in range(n)]
    signer = load.Signer(keys, DOMAIN)
    results: list[load.Result] = []
    for workers in args.workers:
        for app in apps:
            with _uvicorn(app, workers) as server:
                warm = [[load._request(b) for _, _, b in signer.take(i, 2)] for i in range(n)]
                asyncio.run(load._closed_loop(server.base_url, warm, [1], 60, load.Result("warm")))
                base._log(f"{app}, {workers} worker(s): signing {args.per_device * n:,} readings")
                taken = [signer.take(i, args.per_device) for i in range(n)]
                sample = [(r, s) for rows in taken for r, s, _ in rows[:30]]
                streams = [[load._request(b) for _, _, b in rows] for rows in taken]
                name = f"{app} single x{n}, {workers} worker(s)"
                results.append(_scenario(server, name, streams, 1, sample, args.duration))
                if app != "check":
                    continue
                for size in args.batches:
                    senders = min(args.connections, n)
                    per_device = -(-max(args.per_device * n, size * senders * 3) // n)
                    taken = [signer.take(i, per_device) for i in range(n)]
                    sample = [(r, s) for rows in taken for r, s, _ in rows[:30]]
                    batch_streams = []
                    for w in range(senders):
                        flat = [rows[k][2] for k in range(per_device) for rows in taken[w::senders]]
                        batch_streams.append(
                            [
                                load._request(
                                    b'{"readings":[' + b",".join(flat[i : i + size]) + b"]}"
                                )
                                for i in range(0, len(flat), size)
                            ]
                        )
                    name = f"{app} batch {size} x{senders}, {workers} worker(s)"
                    results.append(
                        _scenario(server, name, batch_streams, size, sample, args.duration)
                    )
    print()
    load.print_table(results, platform=False, width=36)
    print(
        "the platform's targets (bench/load.py): one reading per request >= 0.25, batches of "
        "100+ >= 0.5 of the same all-core ceiling"
    )
    print(f"load average at the end: {base._load()}")
    failed = sum(sum(r.failed.values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
