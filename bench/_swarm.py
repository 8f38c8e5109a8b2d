"""Swarm scenario of bench/load.py (``--scenarios swarm``): many devices at once, retrying.

    .venv/bin/python bench/load.py --backends sqlite --scenarios swarm --devices 1200 \\
        --client-timeout 10 --retry --duration 150

Issue 16 (item 7): under 1,200 concurrent one-reading devices with a 10 s client timeout the
server collapsed. This drives that: ``--devices`` devices, each on its own connection from its own
loopback source address (127.1.x.y, so the per-address rate limit counts each device as the
address of a real device would be counted), each sending one signed reading per request, the next
one as soon as the previous one is acknowledged (closed loop), for ``--duration`` seconds. The
server runs as ``make run`` runs it, rate limits ON (``--env CHAINSENSE_RATE_LIMIT_ENABLED=false``
turns them off).

A device does what a real one does: on its client timeout (``--client-timeout``) it drops the
connection; on a timeout, a connection error, or a 503 / 429, it sends the SAME reading again
(same seq) when ``--retry`` is given (after ``Retry-After`` times 1-1.5, or 0.5-1.5 s after a
timeout or connection error: jitter), else it goes on with its next reading. 201 (stored) and
200 (an identical replay: "already stored", the same reading id) both tell the device its
reading is stored; any other answer is final for that reading.

Printed: per ``--report-every`` seconds the acknowledgements/s (201 and 200 apart), 503, 429,
409, timeouts, connection errors and other answers; at the end the readings sent, acknowledged,
stored (read from the SQLite file: what the server really committed), stored but never
acknowledged (the device does not know), acknowledged but not stored (must be 0). Around the
swarm a probe of ``PROBE_DEVICES`` other devices (closed loop, no timeouts) measures the normal
acknowledgement rate before, and after the swarm in ``--report-every`` windows until it is back
to 80 % of that (or ``RECOVERY_WINDOWS`` windows): does the server recover?
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ingest as base

__all__ = ["SwarmResult", "probe", "run_swarm", "stored_pairs"]

PROBE_DEVICES = 100
RECOVERY_WINDOWS = 6
ACK = ("201", "200")


@dataclass
class SwarmResult:
    buckets: list[Counter[str]] = field(default_factory=list)
    sent: set[tuple[int, int]] = field(default_factory=set)
    """(device index, seq) of every reading sent at least once."""
    acked: set[tuple[int, int]] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    unanswered_at_end: int = 0
    """Requests still out when the swarm stopped."""

    def count(self, t: float, kind: str, every: float, n: float = 1) -> None:
        i = int(t // every)
        while len(self.buckets) <= i:
            self.buckets.append(Counter())
        self.buckets[i][kind] += n  # type: ignore[assignment]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        body = await self.reader.readexactly(length) if length else b""
        return status, headers, body

    def abort(self) -> None:
        self.writer.transport.abort()


def source_address(i: int) -> str:
    """Device ``i``'s own loopback source address (127.1.0.1, 127.1.0.2, ...)."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


async def _swarm(
    host: str,
    port: int,
    streams: list[list[tuple[int, bytes]]],
    *,
    duration: float,
    client_timeout: float,
    retry: bool,
    every: float,
    res: SwarmResult,
    reconnect: bool = False,
    scrape_url: str = "",
) -> None:
    start = time.perf_counter()
    end = start + duration
    out = 0

    def now() -> float:
        return time.perf_counter() - start

    async def pause(seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, end - time.perf_counter())))

    async def device(i: int, stream: list[tuple[int, bytes]]) -> None:
        nonlocal out
        conn: _Conn | None = None
        k = 0
        await asyncio.sleep(random.uniform(0, 0.5))  # they do not all start in the same ms
        while k < len(stream) and time.perf_counter() < end:
            seq, request = stream[k]
            res.sent.add((i, seq))
            t0 = time.perf_counter()
            out += 1
            if conn is not None and conn.reader.at_eof():
                # the server closed it while the device waited (its keep-alive timeout is 5 s,
                # a Retry-After can be longer): an HTTP client reconnects, it is no error
                conn.abort()
                conn = None
            try:
                async with asyncio.timeout(client_timeout):
                    if conn is None:
                        reader, writer = await asyncio.open_connection(
                            host, port, local_addr=(source_address(i), 0)
                        )
                        conn = _Conn(reader, writer)
                    status, headers, _ = await conn.post(request)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                kind = "timeout" if isinstance(exc, TimeoutError) else "conn-error"
                res.count(now(), kind, every)
                if conn is not None:
                    conn.abort()
                conn = None
                if not retry:
                    k += 1
                await pause(random.uniform(0.5, 1.5))
                continue
            finally:
                out -= 1
            res.count(now(), str(status), every)
            if reconnect or headers.get(b"connection", b"").lower() == b"close":
                conn.abort()
                conn = None
            if status in (200, 201):
                res.acked.add((i, seq))
                res.latencies.append(time.perf_counter() - t0)
                k += 1
            elif status in (429, 503) and retry:
                wait = float(headers.get(b"retry-after", b"1"))
                await pause(wait * random.uniform(1.0, 1.5))
            else:
                k += 1
        if conn is not None:
            conn.abort()

    async def watch_client() -> None:
        """The client's own event-loop lag (a busy client would inflate the latencies)."""
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await asyncio.sleep(0.1)
            res.count(now(), "client-lag-ms", every, (time.perf_counter() - t0 - 0.1) * 1000)
            res.count(now(), "client-lag-n", every)

    c0 = time.process_time()
    watcher = asyncio.ensure_future(watch_client())
    scraper = asyncio.ensure_future(asyncio.to_thread(_scrape_lag, scrape_url, end, every, res))
    tasks = [asyncio.ensure_future(device(i, s)) for i, s in enumerate(streams)]
    await asyncio.wait(tasks, timeout=duration + client_timeout + 5)
    res.unanswered_at_end = out
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, watcher, scraper, return_exceptions=True)
    res.wall_s = time.perf_counter() - start
    res.client_cpu_s = time.process_time() - c0


async def probe(
    host: str, port: int, streams: list[list[bytes]], seconds: float
) -> tuple[int, Counter[str]]:
    """Closed loop, one connection per stream, no timeout: acknowledgements in ``seconds``."""
    conns = []
    for i, _ in enumerate(streams):
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source_address(50_000 + i), 0)
        )
        conns.append(_Conn(reader, writer))
    end = time.perf_counter() + seconds
    acks = 0
    other: Counter[str] = Counter()

    async def run(conn: _Conn, stream: list[bytes]) -> None:
        nonlocal acks
        for request in stream:
            if time.perf_counter() >= end:
                return
            status, _, _ = await conn.post(request)
            if status in (200, 201):
                acks += 1
            else:
                other[str(status)] += 1

    await asyncio.gather(*(run(c, s) for c, s in zip(conns, streams, strict=True)))
    for c in conns:
        c.abort()
    return acks, other


def stored_pairs(db: Path | str, addresses: dict[str, int]) -> set[tuple[int, int]]:
    """(device index, seq) of the swarm's readings in the SQLite file (read-only) or the
    PostgreSQL database (a SQLAlchemy URL)."""
    if isinstance(db, str):
        import asyncpg  # type: ignore[import-untyped]

        dsn = db.replace("postgresql+asyncpg://", "postgresql://")

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(dsn)
            try:
                return [tuple(r) for r in await conn.fetch("SELECT device, seq FROM readings")]
            finally:
                await conn.close()

        rows = asyncio.run(fetch())
    else:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("SELECT device, seq FROM readings").fetchall()
        finally:
            con.close()
    return {(addresses[d.lower()], s) for d, s in rows if d.lower() in addresses}


def _metric(base_url: str, name: str) -> float:
    import httpx

    total = 0.0
    for line in httpx.get(base_url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _scrape_lag(base_url: str, end: float, every: float, res: SwarmResult) -> None:
    """In a thread: the server's event-loop lag (``chainsense_event_loop_lag_seconds``) mean
    per ``every`` seconds, into the buckets."""
    last = _lag_sums(base_url)
    port = int(base_url.rsplit(":", 1)[1])
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() < end + every:
        i += 1
        while time.perf_counter() < t0 + i * every:  # the accept queue, once a second
            time.sleep(max(0.0, min(1.0, t0 + i * every - time.perf_counter())))
            queued = _accept_queue(port)
            if queued is not None:
                res.count((i - 0.5) * every, "accept-q", every, queued)
                res.count((i - 0.5) * every, "accept-q-n", every)
        try:
            now = _lag_sums(base_url)
        except Exception:  # the server too busy to answer /metrics: no figure this time
            continue
        res.count((i - 0.5) * every, "server-lag-ms", every, (now[0] - last[0]) * 1000)
        res.count((i - 0.5) * every, "server-lag-n", every, now[1] - last[1])
        last = now


def _accept_queue(port: int) -> int | None:
    """Connections waiting in the accept queue of the server's listening socket (its
    ``rx_queue`` in /proc/net/tcp, as ``ss -ltn`` shows it), None off Linux."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    suffix = f":{port:04X}"
    for line in lines:
        fields = line.split()
        if fields[3] == "0A" and fields[1].endswith(suffix):  # LISTEN
            return int(fields[4].split(":")[1], 16)
    return None


def _lag_sums(base_url: str) -> tuple[float, float]:
    import httpx

    total, count = 0.0, 0.0
    for line in httpx.get(base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("chainsense_event_loop_lag_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("chainsense_event_loop_lag_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def _in_app(base_url: str) -> tuple[float, float]:
    """Sum and count of ``chainsense_http_request_duration_seconds`` of POST /v1/readings
    (routed or answered before routing): the time requests spent inside the app."""
    import httpx

    total, count = 0.0, 0.0
    for line in httpx.get(base_url + "/metrics", timeout=30).text.splitlines():
        if not line.startswith("chainsense_http_request_duration_seconds_") or "POST" not in line:
            continue
        if 'route="/v1/readings"' not in line and 'route="unmatched"' not in line:
            continue
        if line.startswith("chainsense_http_request_duration_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("chainsense_http_request_duration_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def _wait_quiet(base_url: str, limit_s: float = 120.0) -> float:
    """Seconds until the server's ingested count stops moving (the backlog of requests the
    devices gave up on is worked off), at most ``limit_s``."""
    t0 = time.perf_counter()
    last = -1.0
    while time.perf_counter() - t0 < limit_s:
        n = _metric(base_url, "chainsense_readings_ingested_total")
        if n == last:
            break
        last = n
        time.sleep(2.0)
    return time.perf_counter() - t0


def run_swarm(
    server: base.Server,
    signer: Any,
    n: int,
    args: argparse.Namespace,
    database_url: str | None = None,
) -> int:
    """The swarm on a running server (on ``database_url``, else its SQLite file); prints the
    report, returns 1 when an acknowledged reading is not stored or the server did not
    recover."""
    import load

    host, port = load._address(server.base_url)
    every = args.report_every
    addresses = {key.address.lower(): i for i, key in enumerate(signer.keys[:n])}
    probe_keys = range(n, n + PROBE_DEVICES)
    per_probe = 150  # 1,500/s for 10 s: more than one process acknowledges

    def probe_streams() -> list[list[bytes]]:
        return [[load._request(b) for _, _, b in signer.take(i, per_probe)] for i in probe_keys]

    base._log(f"swarm: probe of {PROBE_DEVICES} devices for {every:g} s before the swarm")
    before, other = asyncio.run(probe(host, port, probe_streams(), every))
    base._log(
        f"swarm: probe before: {before / every:,.0f} acks/s {dict(other) or ''}; "
        f"load average {base._load()}"
    )

    base._log(f"swarm: signing {args.per_device * n:,} readings for {n} devices")
    streams = []
    for i in range(n):
        rows = signer.take(i, args.per_device)
        streams.append([(r.seq, load._request(b)) for r, _, b in rows])
    res = SwarmResult()
    base._log(
        f"swarm: {n} devices, closed loop, client timeout {args.client_timeout:g} s, "
        f"retry {'on' if args.retry else 'off'}, "
        f"{'a new connection per request' if args.connect_per_request else 'keep-alive'}, "
        f"{args.duration:g} s; load average {base._load()}"
    )
    cpu0 = load._tree_cpu_s(server.process.pid)
    app0 = _in_app(server.base_url)
    with load._sampled(server, args.pyspy / "swarm.txt" if args.pyspy else None):
        asyncio.run(
            _swarm(
                host,
                port,
                streams,
                duration=args.duration,
                client_timeout=args.client_timeout,
                retry=args.retry,
                every=every,
                res=res,
                reconnect=args.connect_per_request,
                scrape_url=server.base_url,
            )
        )
    cpu1 = load._tree_cpu_s(server.process.pid)
    app1 = _in_app(server.base_url)
    load_after_swarm = base._load()
    kinds = ["201", "200", "503", "429", "409", "timeout", "conn-error"]
    lags = (
        "server-lag-ms",
        "server-lag-n",
        "client-lag-ms",
        "client-lag-n",
        "accept-q",
        "accept-q-n",
    )
    print(
        f"\nswarm, per {every:g} s (counts per second; 201 stored, 200 already stored; mean "
        "event-loop lag of the server and of this client, ms):"
    )
    print(
        f"{'t s':>6}" + "".join(f"{k:>11}" for k in kinds) + f"{'other':>8}"
        f"{'srv lag':>9}{'cli lag':>9}"
    )
    for i, bucket in enumerate(res.buckets):
        rest = {k: v for k, v in bucket.items() if k not in kinds and k not in lags}
        srv_lag = bucket["server-lag-ms"] / bucket["server-lag-n"] if bucket["server-lag-n"] else 0
        cli_lag = bucket["client-lag-ms"] / bucket["client-lag-n"] if bucket["client-lag-n"] else 0
        accept_q = bucket["accept-q"] / bucket["accept-q-n"] if bucket["accept-q-n"] else 0
        print(
            f"{i * every:>6.0f}"
            + "".join(f"{bucket[k] / every:>11.1f}" for k in kinds)
            + f"{sum(rest.values()) / every:>8.1f}{srv_lag:>9.0f}{cli_lag:>9.0f}{accept_q:>9.0f}"
            + (f"  {rest}" if rest else "")
        )
    quiet = _wait_quiet(server.base_url)
    base._log(f"swarm: the server's ingested count stopped moving {quiet:.0f} s after the swarm")
    recovery: list[float] = []
    for w in range(RECOVERY_WINDOWS):
        spy = args.pyspy / f"swarm-after-{w}.txt" if args.pyspy else None
        with load._sampled(server, spy):
            acks, other = asyncio.run(probe(host, port, probe_streams(), every))
        recovery.append(acks / every)
        base._log(f"swarm: probe after: {acks / every:,.0f} acks/s {dict(other) or ''}")
        if before and acks >= 0.8 * before:
            break
    stored = stored_pairs(database_url or server_db(server), addresses) & res.sent
    lost = res.acked - stored
    lat = sorted(res.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000 if lat else float("nan")

    srv = f"{(cpu1 - cpu0) / res.wall_s:.0%}" if cpu0 is not None and cpu1 is not None else "n/a"
    print(
        f"\nswarm totals: {len(res.sent):,} readings sent, {len(res.acked):,} acknowledged "
        f"({len(res.acked) / res.wall_s:,.0f}/s over {res.wall_s:.0f} s), {len(stored):,} stored, "
        f"{len(stored - res.acked):,} stored but never acknowledged, "
        f"{len(res.sent - stored):,} never stored, {len(lost):,} acknowledged but NOT stored; "
        f"{res.unanswered_at_end} requests still out at the end; ack latency p50 {pct(0.5):.0f} "
        f"ms, p99 {pct(0.99):.0f} ms; server CPU {srv}, client CPU "
        f"{res.client_cpu_s / res.wall_s:.0%}; load average after the swarm {load_after_swarm}"
    )
    answered = sum(sum(v for k, v in b.items() if k.isdigit()) for b in res.buckets)
    print(
        f"time in the app (server's histogram): mean "
        f"{(app1[0] - app0[0]) / max(1.0, app1[1] - app0[1]) * 1000:,.0f} ms over "
        f"{app1[1] - app0[1]:,.0f} requests; the devices saw {answered:,} answers, mean ack "
        f"latency {sum(lat) / max(1, len(lat)) * 1000:,.0f} ms (the rest: waiting before the "
        "app, in the listen backlog and the event loop)"
    )
    ratio = recovery[-1] / (before / every) if before else 0.0
    print(
        f"recovery: probe {before / every:,.0f} acks/s before, after: "
        + ", ".join(f"{r:,.0f}" for r in recovery)
        + f" (last/before {ratio:.2f}); load average {base._load()}"
    )
    return 1 if lost or ratio < 0.8 else 0


def register(server: base.Server, keys: list[Any]) -> base.Domain:
    """Register ``keys`` through the API, 8 at a time, waiting out 429s (the operator key's
    rate limit is on, as under ``make run``)."""
    import httpx

    auth = {"Authorization": f"Bearer {server.api_key}"}

    async def run() -> base.Domain:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            chain = (await client.get("/v1/chain")).raise_for_status().json()
            domain = base.Domain(chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"])
            todo = list(keys)

            async def worker() -> None:
                while todo:
                    key = todo.pop()
                    while True:
                        r = await client.post(
                            "/v1/devices", json={"address": key.address}, headers=auth
                        )
                        if r.status_code == 201:
                            break
                        if r.status_code in (429, 503):
                            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                            continue
                        raise RuntimeError(f"registering {key.address}: {r.text}")

            await asyncio.gather(*(worker() for _ in range(8)))
            return domain

    return asyncio.run(run())


def server_db(server: base.Server) -> Path:
    return server.log.parent / "data" / "chainsense.db"
