"""Load generator: many concurrent devices against the platform as `make run` runs it.

    .venv/bin/python bench/load.py [--backends sqlite,postgresql] [--devices 200]
                                   [--duration 10] [--batches 100,1000] [--connections 8]
                                   [--scenarios single,half,batch]
    .venv/bin/python bench/load.py --scenarios swarm --devices 1200 --client-timeout 10 --retry
                                   [--connect-per-request] [--duration 60]  (bench/_swarm.py)
    (after the scenarios: the AI worker working off its backlog alone, --catch-up 300 s at most)
    .venv/bin/python bench/load.py --soak 1800 [--rate 100] [--report-every 60]   (bench/_soak.py)

``python -m chainsense serve`` runs in its own process with its own Anvil, the anchorer and the
AI worker on (bench/ingest.py's ``_serve``; a fresh data dir, a fresh PostgreSQL database).
``--devices`` devices are registered through the API. Every reading is signed and every request
encoded BEFORE its scenario's clock starts. The client speaks HTTP/1.1 over raw asyncio streams
(one keep-alive connection per device or per batch sender) so that it costs the shared machine as
little CPU as possible; the client's own CPU share is printed.

Scenarios, each bounded by ``--duration`` seconds:

- ``single``: every device sends one reading per request, as fast as its acknowledgements come
  back (closed loop, ``--devices`` requests in flight): the saturation rate.
- ``half``: the same devices at half that rate, spread evenly (open loop: each device sends on
  its own schedule whether or not the server keeps up): the latency at a sustainable load.
- ``batch``: ``--connections`` senders, each owning a slice of the devices, post batches of each
  size in ``--batches`` (closed loop).
- ``swarm`` (runs alone; bench/_swarm.py): ``--devices`` devices at once, each from its own
  loopback address with the rate limits on, retrying the same reading on a client timeout, 503
  or 429 as a real device does; answers per 10 s, stored vs acknowledged, recovery after.

The reference is ``ReadingVerifier.recover`` over the same signed readings in one thread per core
(libsecp256k1 releases the GIL), best of 3 before and 3 after each scenario: the server cannot do
better than that on this machine, since it has to recover every signature. ratio = stored
readings/s / that ceiling. The issue's targets: single >= 0.25 with p99 < 100 ms at half that
rate; batches of 100+ >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base
from chainsense.identity import DeviceKey, Reading

CEILING_SAMPLE = 6000


@dataclass
class Result:
    scenario: str
    requests: int = 0
    stored: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    ceiling_all: float = 0.0
    offered_rate: float | None = None
    exhausted: bool = False
    explain: str = ""
    loop: tuple[float, float] | None = None
    ai_lag: int | None = None
    """Readings stored but not yet analysed by the AI worker when the scenario ended
    (/v1/ai/status lag_readings; None: no AI worker answered)."""
    """Shares of the wall time the server's main thread (the event loop) ran on a CPU and
    waited, runnable, for one (other load on the machine)."""

    def loop_text(self) -> str:
        if self.loop is None:
            return "n/a"
        on, runq = self.loop
        return f"{on:.0%}/{runq:.0%}/{max(0.0, 1 - on - runq):.0%}"

    @property
    def rate(self) -> float:
        return self.stored / self.wall_s if self.wall_s else 0.0

    @property
    def ratio(self) -> float:
        return self.rate / self.ceiling_all if self.ceiling_all else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000


class Conn:
    """One HTTP/1.1 keep-alive connection, requests pre-encoded."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, request: bytes) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()


def _request(body: bytes) -> bytes:
    return (
        b"POST /v1/readings HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class Signer:
    """Signs each device's readings on demand, continuing its seq (never timed)."""

    def __init__(self, keys: Sequence[DeviceKey], domain: base.Domain) -> None:
        self.keys = keys
        self.domain = domain
        self.next_seq = [1] * len(keys)
        self.t0_ms = int(time.time() * 1000) - 3600_000

    def take(self, device: int, count: int) -> list[tuple[Reading, bytes, bytes]]:
        """``count`` readings of one device: (reading, signature, JSON object bytes)."""
        key = self.keys[device]
        out = []
        for _ in range(count):
            seq = self.next_seq[device]
            self.next_seq[device] += 1
            reading = Reading(
                device=key.address,
                seq=seq,
                timestamp=self.t0_ms + seq * 10,
                schema=base.SCHEMA.id,
                values=(seq % 3000, seq % 1000),
            )
            signature = key.sign(reading, self.domain.chain_id, self.domain.registry)
            obj = reading.to_json() | {"signature": "0x" + signature.hex()}
            out.append((reading, signature, json.dumps(obj, separators=(",", ":")).encode()))
        return out


async def _open_all(host: str, port: int, n: int) -> list[Conn]:
    conns = [Conn(host, port) for _ in range(n)]
    for i in range(0, n, 50):
        await asyncio.gather(*(c.open() for c in conns[i : i + 50]))
    return conns


def _address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


async def _closed_loop(
    base_url: str, streams: list[list[bytes]], per_request: list[int], duration: float, res: Result
) -> None:
    """Each stream on its own connection, one request after the other, until time is up."""
    host, port = _address(base_url)
    conns = await _open_all(host, port, len(streams))
    deadline = time.perf_counter() + duration
    batch = per_request[0] > 1

    async def run(conn: Conn, stream: list[bytes]) -> None:
        for request in stream:
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            status, body = await conn.post(request)
            res.latencies.append(time.perf_counter() - t0)
            res.requests += 1
            if batch and status == 200:
                ack = json.loads(body)
                res.stored += ack["stored"]
                if ack["stored"] != len(ack["results"]):
                    res.failed["not stored in batch"] += len(ack["results"]) - ack["stored"]
            elif status == 201:
                res.stored += 1
            else:
                res.failed[f"HTTP {status}"] += 1
        res.exhausted = True

    c0, t0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(run(c, s) for c, s in zip(conns, streams, strict=True)))
    finally:
        res.wall_s = time.perf_counter() - t0
        res.client_cpu_s = time.process_time() - c0
        await asyncio.gather(*(c.close() for c in conns))


async def _open_loop(
    base_url: str, streams: list[list[bytes]], interval: float, duration: float, res: Result
) -> None:
    """Each device sends on its own schedule, one reading every ``interval`` seconds (phases
    staggered); a request is sent when due even if the previous one is still out (then it goes
    on a second connection of that device), so a slow server shows as latency, not as a lower
    offered rate."""
    host, port = _address(base_url)
    conns = await _open_all(host, port, len(streams))
    n = len(streams)
    start = time.perf_counter() + 0.05
    end = start + duration

    async def send(conn: Conn, request: bytes, pool: list[Conn]) -> None:
        t0 = time.perf_counter()
        status, _ = await conn.post(request)
        res.latencies.append(time.perf_counter() - t0)
        res.requests += 1
        if status == 201:
            res.stored += 1
        else:
            res.failed[f"HTTP {status}"] += 1
        pool.append(conn)

    async def device(i: int, stream: list[bytes]) -> None:
        pool = [conns[i]]
        pending: list[asyncio.Task[None]] = []
        due = start + interval * i / n
        for request in stream:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if due >= end:
                break
            if pool:
                conn = pool.pop()
            else:
                conn = Conn(host, port)
                await conn.open()
            pending.append(asyncio.create_task(send(conn, request, pool)))
            due += interval
        else:
            res.exhausted = True
        await asyncio.gather(*pending)
        await asyncio.gather(*(c.close() for c in pool))

    c0 = time.process_time()
    await asyncio.gather(*(device(i, s) for i, s in enumerate(streams)))
    res.wall_s = time.perf_counter() - start
    res.client_cpu_s = time.process_time() - c0


def _ceiling(signed: list[tuple[Reading, bytes]], domain: base.Domain) -> float:
    return base._ceiling_all_cores(signed[:CEILING_SAMPLE], domain)


_SCRAPED = (
    "chainsense_commit_duration_seconds",
    "chainsense_commit_batch_readings",
    "chainsense_commit_batch_requests",
    "chainsense_signature_verification_duration_seconds",
    "chainsense_ingest_ack_latency_seconds",
)


def _scrape(base_url: str) -> dict[str, float]:
    """``<histogram>_sum`` and ``_count`` of the ingest histograms, from /metrics."""
    import httpx

    out: dict[str, float] = {}
    text = httpx.get(base_url + "/metrics", timeout=30).text
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        base_name = name.split("{", 1)[0]
        if base_name.endswith(("_sum", "_count")) and base_name.rsplit("_", 1)[0] in _SCRAPED:
            out[base_name] = out.get(base_name, 0.0) + float(value)
    return out


def _ai_lag(server: base.Server) -> int | None:
    """The AI worker's backlog now (/v1/ai/status)."""
    import httpx

    with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
        response = httpx.get(
            server.base_url + "/v1/ai/status",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=30,
        )
        if response.status_code == 200:
            return int(response.json()["lag_readings"])
    return None


def _ai_catch_up(server: base.Server, ceiling_all: float, limit_s: float) -> None:
    """With no ingest, how fast the AI worker works off its backlog: its throughput on a
    machine it has to itself (the models' process and the worker's loop, checkpoints
    included), against the one-core recovery rate of the last scenario's ceiling. A platform
    that ingests faster than this for long only grows the backlog."""
    lag0 = _ai_lag(server)
    if not lag0 or lag0 < 2_000:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    one_core = ceiling_all / max(1, cores or 1)
    base._log(f"AI worker catching up on {lag0:,} readings, nothing sent (at most {limit_s:g} s)")
    cpu0, t0 = _tree_cpu_s(server.process.pid), time.perf_counter()
    lag, deadline = lag0, t0 + limit_s
    while lag and time.perf_counter() < deadline:
        time.sleep(0.1)
        polled = _ai_lag(server)
        lag = lag if polled is None else polled
    elapsed = time.perf_counter() - t0
    cpu1 = _tree_cpu_s(server.process.pid)
    done = lag0 - lag
    cpu = f"; server CPU {(cpu1 - cpu0) / elapsed:.0%}" if cpu0 is not None and cpu1 else ""
    base._log(
        f"AI worker alone: {done:,} readings in {elapsed:.1f} s = {done / elapsed:,.0f} readings/s"
        f" = {done / elapsed / one_core:.2f} of one core's recovery rate ({one_core:,.0f}/s)"
        f"{cpu}" + (f"; {lag:,} still behind" if lag else "")
    )


def _explain(before: dict[str, float], after: dict[str, float]) -> str:
    """Mean figures over a scenario from the server's own histograms."""

    def mean(name: str) -> float:
        n = after.get(name + "_count", 0) - before.get(name + "_count", 0)
        s = after.get(name + "_sum", 0) - before.get(name + "_sum", 0)
        return s / n if n else float("nan")

    commits = after.get("chainsense_commit_duration_seconds_count", 0) - before.get(
        "chainsense_commit_duration_seconds_count", 0
    )
    return (
        f"server: {commits:.0f} group commits, mean "
        f"{mean('chainsense_commit_duration_seconds') * 1000:.1f} ms, "
        f"{mean('chainsense_commit_batch_readings'):.1f} readings / "
        f"{mean('chainsense_commit_batch_requests'):.1f} requests each; checks "
        f"{mean('chainsense_signature_verification_duration_seconds') * 1000:.2f} ms per request; "
        f"pipeline ack {mean('chainsense_ingest_ack_latency_seconds') * 1000:.1f} ms"
    )


@contextlib.contextmanager
def _sampled(server: base.Server, out: Path | None) -> Iterator[None]:
    """py-spy sampling the server (every thread while on a CPU, child processes too) into
    ``out`` (collapsed stacks, one line per stack: ``frame;frame;... count``) while the block
    runs; nothing when ``out`` is None."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(server.process.pid), "--format", "raw",
               "--threads", "--subprocesses", "--rate", "200", "--output", str(out)]  # fmt: skip
    spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spying.send_signal(signal.SIGINT)
        try:
            _, err = spying.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spying.kill()
            _, err = spying.communicate()
        if not out.exists():
            base._log(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")


def _measure(
    server: base.Server,
    name: str,
    sample: list[tuple[Reading, bytes]],
    domain: base.Domain,
    run: Coroutine[Any, Any, None],
    res: Result,
    spy: Path | None = None,
) -> Result:
    before = _ceiling(sample, domain)
    scraped = _scrape(server.base_url)
    cpu0 = _tree_cpu_s(server.process.pid)
    sched0 = base._main_thread_sched(server.process.pid)
    with _sampled(server, spy / f"{_slug(res.scenario)}.txt" if spy else None):
        asyncio.run(run)
    cpu1 = _tree_cpu_s(server.process.pid)
    res.ai_lag = _ai_lag(server)
    sched1 = base._main_thread_sched(server.process.pid)
    if sched0 is not None and sched1 is not None and res.wall_s:
        res.loop = ((sched1[0] - sched0[0]) / res.wall_s, (sched1[1] - sched0[1]) / res.wall_s)
    res.explain = _explain(scraped, _scrape(server.base_url))
    after = _ceiling(sample, domain)
    res.ceiling_all = max(before, after)
    if cpu0 is not None and cpu1 is not None:
        res.server_cpu_s = cpu1 - cpu0
    _print_row(res)
    return res


def _tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of the server process and its descendants (``--workers``: the worker
    processes), Anvil left out; None off Linux."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
            names[int(entry.name)] = name
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        if names.get(current, "").startswith("anvil"):
            continue
        cpu = base._process_cpu_s(current)
        if cpu is None:
            if current == pid:
                return None
            continue
        total += cpu
    return total


def print_table(results: Sequence[Result], *, platform: bool = True, width: int = 34) -> None:
    """The summary table; ``platform``: with the event loop and AI lag columns."""
    extra = f"{'loop cpu/runq/sleep':>21}{'AI lag':>8}" if platform else ""
    print(
        f"{'scenario':<{width}}{'readings/s':>11}{'all-core ceil':>14}{'ratio':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'srv cpu':>8}{'cli cpu':>8}{extra}  failed"
    )
    for r in results:
        srv = f"{r.server_cpu_s / r.wall_s:.0%}" if r.server_cpu_s is not None else "n/a"
        lag = "n/a" if r.ai_lag is None else r.ai_lag
        extra = f"{r.loop_text():>21}{lag:>8}" if platform else ""
        print(
            f"{r.scenario:<{width}}{r.rate:>11,.0f}{r.ceiling_all:>14,.0f}{r.ratio:>7.3f}"
            f"{r.pct(0.5):>8.1f}{r.pct(0.99):>8.1f}{srv:>8}{r.client_cpu_s / r.wall_s:>8.0%}"
            f"{extra}  {sum(r.failed.values()) or ''}"
        )


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text).split())


def _print_row(r: Result) -> None:
    srv = f"{r.server_cpu_s / r.wall_s:.0%}" if r.server_cpu_s is not None else "n/a"
    offered = f" offered {r.offered_rate:,.0f}/s;" if r.offered_rate else ""
    base._log(
        f"{r.scenario}:{offered} {r.stored:,} stored in {r.wall_s:.1f} s = {r.rate:,.0f} "
        f"readings/s, ratio {r.ratio:.3f} of {r.ceiling_all:,.0f}/s; {r.requests:,} requests, "
        f"p50 {r.pct(0.5):.1f} ms, p99 {r.pct(0.99):.1f} ms; server CPU {srv}, client CPU "
        f"{r.client_cpu_s / r.wall_s:.0%}; event loop on CPU/runnable/asleep {r.loop_text()}; "
        f"AI lag {'n/a' if r.ai_lag is None else f'{r.ai_lag:,}'} readings"
        + (f"; FAILED {dict(r.failed)}" if r.failed else "")
        + ("; (ran out of pre-signed readings: raise --per-device)" if r.exhausted else "")
    )
    if r.explain:
        base._log(f"{r.scenario}: {r.explain}")


def _run_swarm(backend: str, args: argparse.Namespace) -> int:
    """``--scenarios swarm`` (bench/_swarm.py): rate limits on, as under ``make run``."""
    import _swarm

    n = args.devices
    keys = [DeviceKey(os.urandom(32)) for _ in range(n + _swarm.PROBE_DEVICES)]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cs-swarm-")))
        url = stack.enter_context(base._postgres_database()) if backend == "postgresql" else None
        base._log(f"{backend}: starting `chainsense serve` (Anvil, anchorer, AI worker on)")
        extra = {"CHAINSENSE_RATE_LIMIT_ENABLED": "true"}
        extra |= dict(item.split("=", 1) for item in args.env)
        serve_args = ["--workers", str(args.workers)] if args.workers else []
        server = stack.enter_context(base._serve(workdir, url, None, extra, serve_args))
        base._log(f"{backend}: registering {len(keys)} devices")
        domain = _swarm.register(server, keys)
        status = _swarm.run_swarm(server, Signer(keys, domain), n, args, url)
        base._log(f"{backend}: stopping the server")
    return status


def _run_backend(backend: str, args: argparse.Namespace) -> list[Result]:
    keys = [DeviceKey(os.urandom(32)) for _ in range(args.devices)]
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cs-load-")))
        url = stack.enter_context(base._postgres_database()) if backend == "postgresql" else None
        base._log(f"{backend}: starting `chainsense serve` (Anvil, anchorer, AI worker on)")
        extra = dict(item.split("=", 1) for item in args.env)
        serve_args = ["--workers", str(args.workers)] if args.workers else []
        server = stack.enter_context(base._serve(workdir, url, None, extra, serve_args))
        base._log(f"{backend}: registering {len(keys)} devices")
        domain = base._register(server, keys)
        signer = Signer(keys, domain)
        n = len(keys)
        # warm-up: a few readings per device, not timed
        warm = [[_request(b) for _, _, b in signer.take(i, 2)] for i in range(n)]
        asyncio.run(_closed_loop(server.base_url, warm, [1], 60, Result("warm-up")))

        single: Result | None = None
        if "single" in args.scenarios or "half" in args.scenarios:
            base._log(f"{backend}: signing {args.per_device * n:,} one-reading requests")
            taken = [signer.take(i, args.per_device) for i in range(n)]
            sample = [(r, s) for rows in taken for r, s, _ in rows[:30]]
            streams = [[_request(b) for _, _, b in rows] for rows in taken]
            res = Result(f"{backend} single x{n} devices")
            single = _measure(
                server,
                "single",
                sample,
                domain,
                _closed_loop(server.base_url, streams, [1], args.duration, res),
                res,
                args.pyspy,
            )
            results.append(single)
            # The readings a device did not send leave a gap in its seq: allowed (seq only
            # has to increase).
        if "half" in args.scenarios and single is not None and single.rate > 0:
            rate = single.rate / 2
            interval = n / rate
            count = int(args.duration / interval) + 2
            base._log(f"{backend}: signing {count * n:,} readings for {rate:,.0f}/s")
            taken = [signer.take(i, count) for i in range(n)]
            sample = [(r, s) for rows in taken for r, s, _ in rows[:30]]
            streams = [[_request(b) for _, _, b in rows] for rows in taken]
            res = Result(f"{backend} half-rate x{n} devices", offered_rate=rate)
            results.append(
                _measure(
                    server,
                    "half",
                    sample,
                    domain,
                    _open_loop(server.base_url, streams, interval, args.duration, res),
                    res,
                    args.pyspy,
                )
            )
        if "batch" in args.scenarios:
            for size in args.batches:
                senders = min(args.connections, n)
                # enough for a few requests per sender, whatever the batch size
                per_device = -(-max(args.batch_readings, size * senders * 3) // n)
                base._log(f"{backend}: signing {per_device * n:,} readings for batches of {size}")
                taken = [signer.take(i, per_device) for i in range(n)]
                sample = [(r, s) for rows in taken for r, s, _ in rows[:30]]
                streams = []
                for w in range(senders):
                    owned = taken[w::senders]
                    flat = [rows[k][2] for k in range(per_device) for rows in owned]
                    streams.append(
                        [
                            _request(b'{"readings":[' + b",".join(flat[i : i + size]) + b"]}")
                            for i in range(0, len(flat), size)
                        ]
                    )
                res = Result(f"{backend} batch {size} x{senders} senders")
                results.append(
                    _measure(
                        server,
                        f"batch {size}",
                        sample,
                        domain,
                        _closed_loop(server.base_url, streams, [size], args.duration, res),
                        res,
                        args.pyspy,
                    )
                )
        if results and args.catch_up > 0:
            _ai_catch_up(server, results[-1].ceiling_all, args.catch_up)
        base._log(f"{backend}: stopping the server")
    if args.workers:  # the main thread measured is uvicorn's supervisor, not an event loop
        for r in results:
            r.loop = None
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--per-device", type=int, default=150, help="pre-signed, single mode")
    parser.add_argument("--batches", type=base._ints, default=[100, 1000])
    parser.add_argument("--batch-readings", type=int, default=60_000)
    parser.add_argument("--connections", type=int, default=8, help="batch senders")
    parser.add_argument("--scenarios", default="single,half,batch")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CHAINSENSE_X=VALUE",
        help="a setting for the server (repeatable), e.g. CHAINSENSE_COMMIT_WINDOW_MS=2",
    )
    parser.add_argument("--workers", type=int, default=0, help="serve --workers N (0: default)")
    parser.add_argument(
        "--catch-up",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="after the scenarios, time the AI worker working off its backlog alone (0: no)",
    )
    parser.add_argument(
        "--pyspy",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the server with py-spy during each scenario into DIR/<scenario>.txt",
    )
    swarm = parser.add_argument_group("swarm scenario (bench/_swarm.py)")
    swarm.add_argument("--client-timeout", type=float, default=10.0, help="seconds (swarm)")
    swarm.add_argument(
        "--retry",
        action="store_true",
        help="on a timeout, 503 or 429 a device sends the same reading again (swarm)",
    )
    swarm.add_argument(
        "--connect-per-request",
        action="store_true",
        help="each device opens a new connection for every request, as a sleeping one does",
    )
    soak = parser.add_argument_group("soak mode (bench/_soak.py)")
    soak.add_argument("--soak", type=float, help="seconds at a steady rate, watched (1800)")
    soak.add_argument("--rate", type=float, default=100.0, help="readings/s in all (soak)")
    soak.add_argument(
        "--report-every", type=float, default=None, help="seconds (soak: 60, swarm: 10)"
    )
    soak.add_argument("--warmup", type=float, help="seconds not judged (soak; min(300, 20%%))")
    args = parser.parse_args(argv)
    for item in args.env:
        if "=" not in item or not item.startswith("CHAINSENSE_"):
            parser.error(f"--env takes CHAINSENSE_NAME=VALUE, got {item!r}")
    if args.pyspy:
        args.pyspy.mkdir(parents=True, exist_ok=True)
    if args.soak is not None:
        import _soak

        if args.report_every is None:
            args.report_every = 60.0
        if args.warmup is None:
            args.warmup = min(300.0, args.soak * 0.2)
        status = 0
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            status |= _soak.run_soak(backend, args)
        return status
    args.scenarios = {s.strip() for s in args.scenarios.split(",")}
    if "swarm" in args.scenarios:
        if len(args.scenarios) > 1:
            parser.error("--scenarios swarm runs alone")
        if args.report_every is None:
            args.report_every = 10.0
        print(f"ChainSense swarm: load average {base._load()}", flush=True)
        status = 0
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            status |= _run_swarm(backend, args)
        return status
    cores = os.cpu_count() or 1
    print(
        f"ChainSense load: {args.devices} devices, {args.duration:g} s per scenario; machine: "
        f"{cores} cores, {base._cpu_model()}; load average {base._load()} (shared machine: "
        "compare ratios, not rates)",
        flush=True,
    )
    results: list[Result] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        results += _run_backend(backend, args)
    print()
    print_table(results)
    print(
        "targets: single >= 0.25 of the all-core ceiling, p99 < 100 ms at half that rate; "
        "batches of 100+ >= 0.5"
    )
    print(
        "loop: the server's event-loop thread, share of wall time on a CPU / runnable but "
        "waiting for a CPU (other load on the machine) / asleep (idle or waiting on I/O)"
    )
    print("AI lag: readings stored but not yet analysed by the AI worker at the scenario's end")
    print(f"load average at the end: {base._load()}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
