"""Soak mode of bench/load.py (``--soak SECONDS``): a steady rate for a long time, watched.

    .venv/bin/python bench/load.py --soak 1800 [--backends postgresql] [--rate 100]
                                   [--devices 100] [--report-every 60] [--warmup 300]

``python -m chainsense serve`` as ``make run`` runs it (anchorer and AI worker on; on PostgreSQL
one worker per core) gets ``--rate`` signed one-reading requests per second from ``--devices``
devices. Each device sends on its own schedule, one request at a time as a real device does (a
reading due while the previous one is still out goes as soon as that one is answered), and a
request's latency is counted from when it was due, so a slow server shows as latency, not as a
lower offered rate that hides it. Readings are signed ten seconds ahead in a thread.

Every ``--report-every`` seconds one line: the rate stored, failures, request latency; the CPU
(seconds per second), RSS and open files of the server's processes (the serve process and its
workers, ChainSense's part; the dev chain's Anvil beside it); and the anchoring lag: the p95 of
seal -> anchor delays of the batches anchored in the interval (from ``/v1/batches``:
``sealed_at`` to ``anchored_at``), the oldest batch still waiting, and the largest
``lag_seconds`` of ``/v1/anchoring`` (the oldest reading not anchored yet, sampled every 5 s),
and how many of those 5 s samples found the chain RPC down (``chainsense_chain_rpc_up`` 0 in
``/metrics``), to tell a slow chain from a slow server.

The verdict at the end, against issue 16's targets, over the samples after ``--warmup``: RSS and
open files of the ChainSense processes within 10 % of the first sample after warm-up, and the
p95 seal -> anchor delay <= 5 s in every interval. Exit status 1 when a target is missed or a
request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

import ingest as base
import load
from chainsense.identity import DeviceKey

__all__ = ["run_soak"]

CHUNK_S = 10.0  # readings are signed this far ahead
FLAT = 0.10  # RSS and open files: within 10 % after warm-up
ANCHOR_P95_S = 5.0  # p95 seal -> anchor delay


# --- the server's processes ----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _kind(pid: int) -> str:
    try:
        cmd = (Path(f"/proc/{pid}/cmdline").read_bytes()).split(b"\x00")
    except OSError:
        return "gone"
    text = b" ".join(cmd)
    if b"anvil" in cmd[0]:
        return "anvil"
    if b"spawn_main" in text:
        return "worker"
    if b"resource_tracker" in text:
        return "helper"
    if b"chain" in cmd and b"up" in cmd:
        return "chain-up"
    if b"serve" in cmd:
        return "serve"
    return "other"


def server_processes(root: int) -> dict[int, str]:
    """The serve process and every descendant (workers, the dev chain), pid -> kind."""
    tree = _children()
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        kind = _kind(pid)
        if kind != "gone":
            out[pid] = kind
        todo.extend(tree.get(pid, []))
    return out


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _open_files(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


@dataclass
class Usage:
    """RSS (MiB) and open files of the ChainSense processes, and of the dev chain's Anvil."""

    rss_mib: float
    files: int
    anvil_rss_mib: float
    anvil_files: int
    per_process: dict[int, tuple[str, float, int]]
    cpu_s: dict[int, float] = field(default_factory=dict)  # user + system seconds, per pid

    def cpu_share(self, before: Usage | None, wall_s: float, anvil: bool) -> float:
        """CPU seconds per second since ``before``, of the ChainSense processes or of Anvil."""
        if before is None or wall_s <= 0:
            return float("nan")
        used = sum(
            cpu - before.cpu_s.get(pid, 0.0)
            for pid, cpu in self.cpu_s.items()
            if (self.per_process[pid][0] == "anvil") == anvil
        )
        return used / wall_s

    @classmethod
    def sample(cls, root: int) -> Usage:
        per: dict[int, tuple[str, float, int]] = {}
        cpu: dict[int, float] = {}
        for pid, kind in server_processes(root).items():
            per[pid] = (kind, _rss_kib(pid) / 1024, _open_files(pid))
            cpu[pid] = base._process_cpu_s(pid) or 0.0
        ours = [v for v in per.values() if v[0] != "anvil"]
        anvil = [v for v in per.values() if v[0] == "anvil"]
        return cls(
            rss_mib=sum(v[1] for v in ours),
            files=sum(v[2] for v in ours),
            anvil_rss_mib=sum(v[1] for v in anvil),
            anvil_files=sum(v[2] for v in anvil),
            per_process=per,
            cpu_s=cpu,
        )


# --- anchoring -----------------------------------------------------------------------------


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


class AnchorWatch:
    """Every batch's sealing and anchoring time, read back from ``/v1/batches``."""

    def __init__(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self.client = client
        self.auth = auth
        self.batches: dict[int, tuple[datetime, datetime | None]] = {}
        self._floor = 0  # every batch up to this id is known and anchored
        self.max_lag_s = 0.0  # /v1/anchoring lag_seconds, largest since the last take
        self.rpc_down = 0  # 5 s samples of /metrics with chainsense_chain_rpc_up 0, since then

    async def refresh(self) -> None:
        cursor: str | None = None
        while True:
            params = {"order": "desc", "limit": "1000"} | ({"cursor": cursor} if cursor else {})
            page = (
                (await self.client.get("/v1/batches", params=params, headers=self.auth))
                .raise_for_status()
                .json()
            )
            for b in page["items"]:
                sealed = _time(b["sealed_at"])
                assert sealed is not None
                self.batches[b["id"]] = (sealed, _time(b["anchored_at"]))
            ids = [b["id"] for b in page["items"]]
            cursor = page["next_cursor"]
            if not cursor or not ids or min(ids) <= self._floor:
                break
        pending = [i for i, (_, anchored) in self.batches.items() if anchored is None]
        self._floor = min(pending) - 1 if pending else max(self.batches, default=0)

    def delays(self, since: datetime, until: datetime) -> list[float]:
        """Seal -> anchor seconds of the batches anchored in [since, until)."""
        return [
            (anchored - sealed).total_seconds()
            for sealed, anchored in self.batches.values()
            if anchored is not None and since <= anchored < until
        ]

    def oldest_pending_s(self, now: datetime) -> float:
        waiting = [
            max(0.0, (now - s).total_seconds()) for s, a in self.batches.values() if a is None
        ]
        return max(waiting, default=0.0)

    async def poll_lag(self) -> None:
        """Sample ``/v1/anchoring``'s ``lag_seconds`` every 5 s (the oldest unanchored reading)."""
        while True:
            with contextlib.suppress(httpx.HTTPError):
                status = (await self.client.get("/v1/anchoring", headers=self.auth)).json()
                self.max_lag_s = max(self.max_lag_s, float(status["lag_seconds"]))
                text = (await self.client.get("/metrics")).text
                self.rpc_down += any(
                    line.startswith("chainsense_chain_rpc_up") and line.endswith(" 0.0")
                    for line in text.splitlines()
                )
            await asyncio.sleep(5)

    def take_max_lag(self) -> tuple[float, int]:
        """The largest lag and the chain-RPC-down samples since the last call."""
        value, self.max_lag_s = self.max_lag_s, 0.0
        down, self.rpc_down = self.rpc_down, 0
        return value, down


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(len(ordered) * q) - 1)]


# --- load ----------------------------------------------------------------------------------


@dataclass
class Interval:
    requests: int = 0
    stored: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    client_behind: int = 0


@dataclass
class Report:
    t_s: float
    rate: float
    failed: int
    p50_ms: float
    p99_ms: float
    usage: Usage
    anchored: int
    anchor_p95_s: float
    oldest_pending_s: float
    max_lag_s: float
    rpc_down: int
    cpu: float = float("nan")  # CPU seconds per second of the ChainSense processes
    anvil_cpu: float = float("nan")


class SoakLoad:
    """``devices`` devices at ``rate`` readings/s in all, each on its own schedule, signed
    ahead."""

    def __init__(self, base_url: str, signer: load.Signer, rate: float) -> None:
        self.host, self.port = load._address(base_url)
        self.signer = signer
        self.n = len(signer.keys)
        self.interval = self.n / rate  # seconds between two readings of one device
        self.queues: list[deque[bytes]] = [deque() for _ in range(self.n)]
        self.current = Interval()
        self.total = Interval()

    def _sign_chunk(self) -> None:
        per_device = math.ceil(CHUNK_S / self.interval) + 1
        for i in range(self.n):
            self.queues[i].extend(load._request(b) for _, _, b in self.signer.take(i, per_device))

    async def _signer(self, end: float) -> None:
        while time.perf_counter() < end:
            if min(len(q) for q in self.queues) * self.interval < 2 * CHUNK_S:
                await asyncio.to_thread(self._sign_chunk)
            await asyncio.sleep(1.0)

    def take(self) -> Interval:
        done, self.current = self.current, Interval()
        for name in ("requests", "stored", "client_behind"):
            setattr(self.total, name, getattr(self.total, name) + getattr(done, name))
        self.total.failed.update(done.failed)
        return done

    async def run(self, duration: float) -> None:
        self._sign_chunk()
        conns = await load._open_all(self.host, self.port, self.n)
        start = time.perf_counter() + 0.1
        end = start + duration
        signing = asyncio.create_task(self._signer(end))

        async def device(i: int) -> None:
            conn = conns[i]
            due = start + self.interval * i / self.n
            while due < end:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                while not self.queues[i]:
                    self.current.client_behind += 1
                    await asyncio.sleep(0.05)
                request = self.queues[i].popleft()
                try:
                    status, _ = await conn.post(request)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    self.current.failed[type(exc).__name__] += 1
                    await conn.close()
                    conn = load.Conn(self.host, self.port)
                    await conn.open()
                else:
                    interval = self.current
                    # from when the reading was due: a late send is the server's delay too
                    interval.latencies.append(time.perf_counter() - due)
                    interval.requests += 1
                    if status == 201:
                        interval.stored += 1
                    else:
                        interval.failed[f"HTTP {status}"] += 1
                due += self.interval
            await conn.close()

        try:
            await asyncio.gather(*(device(i) for i in range(self.n)))
        finally:
            signing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await signing


# --- one soak ------------------------------------------------------------------------------


def _line(r: Report) -> str:
    u = r.usage
    return (
        f"{r.t_s:7.0f}s {r.rate:7.1f}/s fail {r.failed:<4d} p50 {r.p50_ms:6.1f} ms "
        f"p99 {r.p99_ms:7.1f} ms | CPU {r.cpu:4.0%} RSS {u.rss_mib:7.1f} MiB files {u.files:4d} "
        f"(anvil CPU {r.anvil_cpu:4.0%} {u.anvil_rss_mib:6.1f} MiB {u.anvil_files:3d}) | "
        f"anchored {r.anchored:4d} "
        f"p95 {r.anchor_p95_s:5.2f} s, oldest waiting {r.oldest_pending_s:5.2f} s, "
        f"max lag {r.max_lag_s:5.2f} s"
        + (f" | chain RPC down in {r.rpc_down} probes" if r.rpc_down else "")
    )


def _spread(values: list[float]) -> float:
    """Largest relative distance from the first value."""
    if not values or values[0] == 0:
        return float("nan")
    return max(abs(v / values[0] - 1) for v in values)


async def _soak(server: base.Server, signer: load.Signer, args: argparse.Namespace) -> int:
    soak = SoakLoad(server.base_url, signer, args.rate)
    auth = {"Authorization": f"Bearer {server.api_key}"}
    reports: list[Report] = []
    all_delays: list[float] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        watch = AnchorWatch(client, auth)
        lag = asyncio.create_task(watch.poll_lag())
        driving = asyncio.create_task(soak.run(args.soak))
        t0 = time.perf_counter()
        since = datetime.now(UTC)
        # samples while the load runs (the end of a run, connections closing, is not judged)
        marks = [
            k * args.report_every for k in range(1, int((args.soak - 1) // args.report_every) + 1)
        ]
        try:
            for mark in marks:
                await asyncio.sleep(max(0.0, t0 + mark - time.perf_counter()))
                if driving.done():
                    break
                now = datetime.now(UTC)
                interval = soak.take()
                await watch.refresh()
                delays = watch.delays(since, now)
                lag_s, rpc_down = watch.take_max_lag()
                elapsed = time.perf_counter() - t0
                if elapsed >= args.warmup:
                    all_delays += delays
                report = Report(
                    t_s=elapsed,
                    rate=interval.stored / args.report_every,
                    failed=sum(interval.failed.values()),
                    p50_ms=_p(interval.latencies, 0.5) * 1000,
                    p99_ms=_p(interval.latencies, 0.99) * 1000,
                    usage=Usage.sample(server.process.pid),
                    anchored=len(delays),
                    anchor_p95_s=_p(delays, 0.95),
                    oldest_pending_s=watch.oldest_pending_s(now),
                    max_lag_s=lag_s,
                    rpc_down=rpc_down,
                )
                previous = reports[-1].usage if reports else None
                report.cpu = report.usage.cpu_share(previous, args.report_every, anvil=False)
                report.anvil_cpu = report.usage.cpu_share(previous, args.report_every, anvil=True)
                reports.append(report)
                base._log(_line(report) + (" (warm-up)" if elapsed < args.warmup else ""))
                if interval.failed:
                    base._log(f"  failed: {dict(interval.failed)}")
                since = now
            await driving
            soak.take()  # the tail counts in the totals
        finally:
            driving.cancel()
            lag.cancel()
            for task in (driving, lag):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return _verdict(reports, all_delays, soak.total, args)


def _verdict(
    reports: list[Report], delays: list[float], total: Interval, args: argparse.Namespace
) -> int:
    after = [r for r in reports if r.t_s >= args.warmup]
    print()
    last = reports[-1].usage if reports else None
    if last is not None:
        print("processes at the end (pid kind RSS MiB open files):")
        for pid, (kind, mib, count) in sorted(last.per_process.items()):
            print(f"  {pid:>7} {kind:<9}{mib:8.1f}{count:6d}")
    short = "" if args.soak >= 1800 else f" (a SHORT run: {args.soak:g} s, the target is 1800 s)"
    print(
        f"soak verdict{short}: {total.stored:,} readings stored at {args.rate:g}/s offered "
        f"from {args.devices} devices, {sum(total.failed.values())} requests failed, "
        f"{len(after)} samples after a {args.warmup:g} s warm-up"
    )
    if len(after) < 2:
        print("  not enough samples after warm-up to judge flatness: run longer")
        return 1
    rss = _spread([r.usage.rss_mib for r in after])
    files = _spread([float(r.usage.files) for r in after])
    p95s = [r.anchor_p95_s for r in after if not math.isnan(r.anchor_p95_s)]
    worst = max(p95s, default=float("nan"))
    checks = [
        (
            "RSS flat within 10%",
            rss <= FLAT,
            f"{after[0].usage.rss_mib:.1f} -> {after[-1].usage.rss_mib:.1f} MiB, "
            f"largest distance {rss:.1%}",
        ),
        (
            "open files flat within 10%",
            files <= FLAT,
            f"{after[0].usage.files} -> {after[-1].usage.files}, largest distance {files:.1%}",
        ),
        (
            "anchoring p95 <= 5 s throughout",
            bool(p95s)
            and all(
                r.anchor_p95_s <= ANCHOR_P95_S
                if not math.isnan(r.anchor_p95_s)
                else r.oldest_pending_s <= ANCHOR_P95_S  # nothing anchored: nothing late
                for r in after
            ),
            f"worst interval p95 {worst:.2f} s, overall p95 {_p(delays, 0.95):.2f} s over "
            f"{len(delays)} batches; largest /v1/anchoring lag "
            f"{max(r.max_lag_s for r in after):.2f} s",
        ),
        ("no failed request", not total.failed, str(dict(total.failed) or "none")),
    ]
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(
        f"  anvil (dev chain, not judged): RSS {after[0].usage.anvil_rss_mib:.1f} -> "
        f"{after[-1].usage.anvil_rss_mib:.1f} MiB"
    )
    if total.client_behind:
        print(f"  the load generator fell behind its signing {total.client_behind} times")
    return 0 if all(ok for _, ok, _ in checks) else 1


def run_soak(backend: str, args: argparse.Namespace) -> int:
    """One soak against a fresh server on ``backend``; the exit status of the verdict."""
    keys = [DeviceKey(os.urandom(32)) for _ in range(args.devices)]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cs-soak-")))
        url = stack.enter_context(base._postgres_database()) if backend == "postgresql" else None
        base._log(f"{backend}: starting `chainsense serve` (Anvil, anchorer, AI worker on)")
        server = stack.enter_context(base._serve(workdir, url, None))
        kinds = Counter(server_processes(server.process.pid).values())
        base._log(f"{backend}: server processes {dict(kinds)}")
        base._log(f"{backend}: registering {len(keys)} devices")
        signer = load.Signer(keys, base._register(server, keys))
        base._log(
            f"{backend}: soak for {args.soak:g} s at {args.rate:g} readings/s "
            f"({args.devices} devices, one reading per request), a report every "
            f"{args.report_every:g} s, warm-up {args.warmup:g} s"
        )
        status = asyncio.run(_soak(server, signer, args))
        base._log(f"{backend}: stopping the server")
    return status


if __name__ == "__main__":
    # `make bench` runs every bench/*.py: this module is the soak mode of bench/load.py
    print("bench/_soak.py is the soak mode of bench/load.py (--soak SECONDS): nothing to run alone")
