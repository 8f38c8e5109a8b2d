"""Ingest throughput end to end: signed readings per second through the real HTTP server, against
the signature-recovery ceiling measured in the same run.

    .venv/bin/python bench/ingest.py [--quick] [--backends sqlite,postgresql]
                                     [--batches 100,500,1000] [--readings 24000]
                                     [--concurrency 4] [--profile DIR]

For each backend, ``python -m chainsense serve`` runs in its own process (one uvicorn worker, its
own Anvil, a fresh data dir; PostgreSQL gets a fresh database, dropped afterwards), so the client
never shares the server's GIL. Devices are registered through POST /v1/devices; every reading is
signed and every request body encoded BEFORE timing. Each configuration then POSTs ``--readings``
readings in batches of the given size from ``--concurrency`` connections at once; each connection
owns a disjoint set of devices and sends their readings in seq order, so every reading must come
back ``stored``: the script counts the acknowledgements and reports any that are not.

The ceiling is ``ReadingVerifier.recover`` over the same signed readings on one pinned core, the
best of 3 runs right before and 3 right after each configuration (so a slow spell of the machine
does not flatter the ratio): the server cannot do better than that on one core, since it also has
to recover every signature. ratio = end-to-end readings/s / ceiling. The issue's target: ratio
>= 0.5 on SQLite with batches.

``--profile DIR`` serves the same app through ``bench/_server.py``, which profiles the event
loop's thread with cProfile during each timed configuration only (slower: read the shares, not
the rates), writes ``DIR/<backend>-<batch>.prof`` and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import pstats
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chainsense.identity import KECCAK_BACKEND, DeviceKey, Reading, ReadingVerifier
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

SCHEMA = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
POSTGRES_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
READY_TIMEOUT_S = 180.0
WARMUP_PER_DEVICE = 50
CEILING_SAMPLE = 8000


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _machine_cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process, or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


def _main_thread_sched(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread, or
    None where /proc/<pid>/task/<pid>/schedstat is missing."""
    try:
        on_cpu, waiting = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- readings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    chain_id: int
    registry: str


@dataclass
class Signed:
    """Every reading of one backend run, signed: per device, in seq order from 1."""

    domain: Domain
    per_device: list[list[tuple[Reading, bytes, dict[str, Any]]]]


def _device_keys(count: int) -> list[DeviceKey]:
    return [DeviceKey(hashlib.sha256(f"bench-ingest-{i}".encode()).digest()) for i in range(count)]


def _sign_all(keys: Sequence[DeviceKey], per_device: int, domain: Domain) -> Signed:
    rng = random.Random(747)
    start_ms = int(time.time() * 1000) - 24 * 3600 * 1000
    out: list[list[tuple[Reading, bytes, dict[str, Any]]]] = []
    for key in keys:
        rows: list[tuple[Reading, bytes, dict[str, Any]]] = []
        for seq in range(1, per_device + 1):
            reading = Reading(
                device=key.address,
                seq=seq,
                timestamp=start_ms + seq * 1000,
                schema=SCHEMA.id,
                values=(rng.randrange(-3000, 3000), rng.randrange(0, 1000)),
            )
            signature = key.sign(reading, domain.chain_id, domain.registry)
            rows.append(
                (reading, signature, reading.to_json() | {"signature": "0x" + signature.hex()})
            )
        out.append(rows)
    return Signed(domain, out)


def _bodies(
    signed: Signed, start: int, per_device: int, batch: int, concurrency: int
) -> list[list[bytes]]:
    """Request bodies per connection: connection w owns devices w, w + concurrency, ...; its
    devices' readings ``[start, start + per_device)`` are interleaved in seq order, then cut into
    batches."""
    streams: list[list[bytes]] = []
    for w in range(concurrency):
        owned = [rows[start : start + per_device] for rows in signed.per_device[w::concurrency]]
        stream = [rows[i][2] for i in range(per_device) for rows in owned]
        streams.append(
            [
                json.dumps({"readings": stream[i : i + batch]}, separators=(",", ":")).encode()
                for i in range(0, len(stream), batch)
            ]
        )
    return streams


def _ceiling(
    items: Sequence[tuple[Reading, bytes]], domain: Domain, repeat: int = 3
) -> tuple[float, float]:
    """ReadingVerifier.recover over ``items`` on one pinned core, best of ``repeat``: readings
    per second of wall time, and CPU seconds per reading. The signers are checked after timing."""
    verifier = ReadingVerifier(domain.chain_id, domain.registry)
    expected = [r.device for r, _ in items]
    previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if previous is not None:
        os.sched_setaffinity(0, {min(previous)})
    try:
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeat):
            gc.collect()
            recover = verifier.recover
            t0, c0 = time.perf_counter(), time.process_time()
            got = [recover(r, s) for r, s in items]
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
            if got != expected:
                raise RuntimeError("ReadingVerifier.recover returned a wrong signer")
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    return len(items) / best, best_cpu / len(items)


def _ceiling_all_cores(
    items: Sequence[tuple[Reading, bytes]], domain: Domain, repeat: int = 3
) -> float:
    """ReadingVerifier.recover over ``items`` split across one thread per core (libsecp256k1
    releases the GIL), best of ``repeat``: readings per second of wall time on the whole machine."""
    from concurrent.futures import ThreadPoolExecutor

    verifier = ReadingVerifier(domain.chain_id, domain.registry)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, cores or 1)
    chunks = [items[i::n] for i in range(n)]

    def work(chunk: Sequence[tuple[Reading, bytes]]) -> int:
        recover = verifier.recover
        return sum(recover(r, sig) == r.device for r, sig in chunk)

    best = float("inf")
    with ThreadPoolExecutor(n) as pool:
        for _ in range(repeat):
            gc.collect()
            t0 = time.perf_counter()
            ok = sum(pool.map(work, chunks))
            best = min(best, time.perf_counter() - t0)
            if ok != len(items):
                raise RuntimeError("ReadingVerifier.recover returned a wrong signer")
    return len(items) / best


# --- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    log: Path


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def _serve(
    workdir: Path,
    database_url: str | None,
    profile: Path | None,
    extra_env: dict[str, str] | None = None,
    serve_args: Sequence[str] = (),
) -> Iterator[Server]:
    """``python -m chainsense serve`` on a fresh data dir and free ports (``bench/_server.py``
    writing cProfile windows to ``profile`` when given); stopped on exit with SIGINT, so the
    lifespan closes Anvil. ``extra_env`` adds settings (``CHAINSENSE_...``), ``serve_args``
    options of ``serve`` (``--workers 2``)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    env |= {
        "CHAINSENSE_DATA_DIR": str(workdir / "data"),
        "CHAINSENSE_HOST": "127.0.0.1",
        "CHAINSENSE_PORT": str(port),
        "CHAINSENSE_ANVIL_PORT": str(_free_port()),
        # The throughput ceiling is measured, not the rate limits (bench/ratelimit.py does that).
        "CHAINSENSE_RATE_LIMIT_ENABLED": "false",
    }
    if database_url:
        env["CHAINSENSE_DATABASE_URL"] = database_url
    env |= extra_env or {}
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "chainsense",
            "apikey",
            "create",
            "--name",
            "bench",
            "--scope",
            "operator",
        ],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if created.returncode != 0:
        raise RuntimeError(f"chainsense apikey create failed:\n{created.stderr}")
    api_key = created.stdout.strip().splitlines()[-1]

    command = [sys.executable, "-m", "chainsense", "serve", *serve_args]
    if profile is not None:
        command = [sys.executable, str(Path(__file__).with_name("_server.py")), str(profile)]
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", api_key, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)
        if profile is not None:  # keep the server's log beside its profile
            with contextlib.suppress(OSError):
                shutil.copyfile(log, profile.with_suffix(".log"))


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{_tail(server.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in time:\n{_tail(server.log)}")
            time.sleep(0.25)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Anything left in the server's own session (its Anvil, if shutdown did not stop it).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# --- PostgreSQL ----------------------------------------------------------------------------


async def _pg_admin(sql: str | None = None) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        if sql:
            await conn.execute(sql)
    finally:
        await conn.close()


def _ensure_postgres() -> None:
    try:
        asyncio.run(_pg_admin())
        return
    except OSError:
        pass
    except Exception as exc:  # asyncpg errors: not reachable as this user
        raise RuntimeError(f"PostgreSQL refused the connection: {exc}") from exc
    _log("PostgreSQL is down; starting it")
    subprocess.run(POSTGRES_START, shell=True, check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while True:
        try:
            asyncio.run(_pg_admin())
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {exc}") from exc
            time.sleep(0.5)


@contextlib.contextmanager
def _postgres_database() -> Iterator[str]:
    _ensure_postgres()
    # BENCH_PG_PREFIX: a name prefix of your own on a shared server
    name = f"{os.environ.get('BENCH_PG_PREFIX', 'chainsense_bench_')}{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://root@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- one run -------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    stored: int = 0
    not_stored: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0


@dataclass
class Row:
    backend: str
    batch: int
    readings: int
    tally: Tally
    wall_s: float
    ceiling: float
    ceiling_cpu: float
    """CPU seconds per reading of the ceiling."""
    server_cpu_s: float | None
    """CPU seconds the server process (all its threads) used during the configuration."""
    machine_cpu: float | None
    main_thread: tuple[float, float] | None
    """Shares of the wall time the server's main thread (the event loop) spent on a CPU, and
    runnable but waiting for one; the rest it slept (idle, or waiting on I/O and locks)."""
    ceiling_all: float = 0.0
    """Recovery on every core (one thread each): the ceiling if the server could use them all."""

    @property
    def ratio_all(self) -> float:
        return self.rate / self.ceiling_all if self.ceiling_all else 0.0

    @property
    def rate(self) -> float:
        return self.tally.stored / self.wall_s

    @property
    def ratio(self) -> float:
        return self.rate / self.ceiling

    @property
    def server_us(self) -> float | None:
        """Server CPU microseconds per stored reading."""
        if self.server_cpu_s is None or not self.tally.stored:
            return None
        return self.server_cpu_s / self.tally.stored * 1e6

    @property
    def cpu_ratio(self) -> float | None:
        """Ceiling CPU per reading / server CPU per reading: the ratio the server would reach
        if it had a core to itself and never waited."""
        us = self.server_us
        return self.ceiling_cpu * 1e6 / us if us else None


async def _post_all(base_url: str, streams: list[list[bytes]]) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=len(streams), max_keepalive_connections=len(streams))
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:

        async def send(bodies: list[bytes]) -> None:
            for body in bodies:
                t0 = time.perf_counter()
                response = await client.post("/v1/readings", content=body, headers=headers)
                tally.latencies.append(time.perf_counter() - t0)
                tally.requests += 1
                if response.status_code != 200:
                    tally.not_stored[f"HTTP {response.status_code}"] += body.count(b'"seq"')
                    continue
                ack = response.json()
                tally.stored += ack["stored"]
                for result in ack["results"]:
                    if result["status"] != "stored":
                        error = result.get("error") or {}
                        tally.not_stored[f"{result['status']} {error.get('type', '')}"] += 1

        # Open every connection before the clock starts.
        await asyncio.gather(*(client.get("/healthz") for _ in streams))
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(send(bodies) for bodies in streams))
        wall = time.perf_counter() - t0
        tally.client_cpu_s = time.process_time() - c0
    return tally, wall


def _register(server: Server, keys: Sequence[DeviceKey]) -> Domain:
    auth = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        chain = client.get("/v1/chain").raise_for_status().json()
        domain = Domain(chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"])
        for key in keys:
            response = client.post("/v1/devices", json={"address": key.address}, headers=auth)
            if response.status_code != 201:
                raise RuntimeError(f"registering {key.address}: {response.text}")
    return domain


def _check_last_seq(server: Server, keys: Sequence[DeviceKey], expected: int) -> list[str]:
    auth = {"Authorization": f"Bearer {server.api_key}"}
    wrong = []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for key in keys:
            last = client.get(f"/v1/devices/{key.address}", headers=auth).json().get("last_seq")
            if last != expected:
                wrong.append(f"{key.address} last_seq {last}, expected {expected}")
    return wrong


def _run_backend(
    backend: str,
    args: argparse.Namespace,
    keys: Sequence[DeviceKey],
    signed: Signed | None,
) -> tuple[list[Row], Signed]:
    per_config = args.readings // len(keys)
    per_device = WARMUP_PER_DEVICE + per_config * len(args.batches)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cs-bench-")))
        database_url = (
            stack.enter_context(_postgres_database()) if backend == "postgresql" else None
        )
        profile = args.profile / f"{backend}.prof" if args.profile else None
        _log(f"{backend}: starting `chainsense serve` (Anvil, fresh {backend} store)")
        server = stack.enter_context(_serve(workdir, database_url, profile))
        _log(
            f"{backend}: ready at {server.base_url} (pid {server.process.pid}); registering "
            f"{len(keys)} devices"
        )
        domain = _register(server, keys)
        if signed is None or signed.domain != domain:
            _log(
                f"{backend}: signing {per_device * len(keys):,} readings "
                f"(chain {domain.chain_id}, registry {domain.registry}), not timed"
            )
            t0 = time.perf_counter()
            signed = _sign_all(keys, per_device, domain)
            _log(f"{backend}: signed in {time.perf_counter() - t0:.1f} s")
        else:
            _log(f"{backend}: same EIP-712 domain as before; reusing the signed readings")
        warm = _bodies(signed, 0, WARMUP_PER_DEVICE, 100, args.concurrency)
        tally, _ = asyncio.run(_post_all(server.base_url, warm))
        if tally.not_stored:
            raise RuntimeError(f"warm-up readings not stored: {dict(tally.not_stored)}")
        _log(f"{backend}: warm-up done ({tally.stored} readings)")

        start = WARMUP_PER_DEVICE
        for batch in args.batches:
            streams = _bodies(signed, start, per_config, batch, args.concurrency)
            sample = [
                (r, s)
                for rows_ in signed.per_device
                for r, s, _ in rows_[start : start + per_config]
            ][:CEILING_SAMPLE]
            start += per_config
            count = per_config * len(keys)
            before = _ceiling(sample, domain)
            _log(
                f"{backend}: batch {batch}: posting {count:,} readings in "
                f"{sum(map(len, streams))} requests over {len(streams)} connections"
            )
            gc.collect()
            pid = server.process.pid
            cpu0, ticks0, sched0 = (
                _process_cpu_s(pid),
                _machine_cpu_ticks(),
                _main_thread_sched(pid),
            )
            if profile is not None:
                server.process.send_signal(signal.SIGUSR1)
            tally, wall = asyncio.run(_post_all(server.base_url, streams))
            if profile is not None:
                _collect_profile(server, profile, profile.with_name(f"{backend}-{batch}.prof"))
            cpu1, ticks1, sched1 = (
                _process_cpu_s(pid),
                _machine_cpu_ticks(),
                _main_thread_sched(pid),
            )
            server_cpu_s = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
            machine_cpu = None
            main_thread = None
            if sched0 is not None and sched1 is not None:
                main_thread = ((sched1[0] - sched0[0]) / wall, (sched1[1] - sched0[1]) / wall)
            if ticks0 is not None and ticks1 is not None and ticks1[1] > ticks0[1]:
                machine_cpu = (ticks1[0] - ticks0[0]) / (ticks1[1] - ticks0[1])
            after = _ceiling(sample, domain)
            ceiling, ceiling_cpu = max(before[0], after[0]), min(before[1], after[1])
            ceiling_all = _ceiling_all_cores(sample, domain)
            row = Row(
                backend,
                batch,
                count,
                tally,
                wall,
                ceiling,
                ceiling_cpu,
                server_cpu_s,
                machine_cpu,
                main_thread,
                ceiling_all,
            )
            rows.append(row)
            lat = sorted(tally.latencies)
            _log(
                f"{backend}: batch {batch}: {row.rate:,.0f} readings/s ({tally.stored:,} stored "
                f"in {wall:.2f} s; request p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
                f"p95 {lat[int(len(lat) * 0.95)] * 1000:.0f} ms; client CPU "
                f"{tally.client_cpu_s / wall:.0%})"
                + (f"; NOT STORED: {dict(tally.not_stored)}" if tally.not_stored else "")
            )
            _log(
                f"{backend}: batch {batch}: ratio {row.ratio:.2f} to the ceiling of "
                f"{ceiling:,.0f} readings/s (ReadingVerifier.recover, one pinned core, "
                f"{len(sample):,} of these readings; best before {before[0]:,.0f}, after "
                f"{after[0]:,.0f})"
            )

        wrong = _check_last_seq(server, keys, start)
        if wrong:
            raise RuntimeError(f"{backend}: devices' last_seq is off: {wrong}")
        _log(f"{backend}: every device's last_seq is {start}, as sent; stopping the server")
    if profile is not None:
        for batch in args.batches:
            _print_profile(
                f"{backend}, batch {batch}", profile.with_name(f"{backend}-{batch}.prof")
            )
    return rows, signed


# --- profile -------------------------------------------------------------------------------


def _collect_profile(server: Server, written: Path, keep: Path) -> None:
    """Stop the server's profile window (SIGUSR2), wait for the file, and keep it as ``keep``."""
    written.unlink(missing_ok=True)
    server.process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while not written.exists():
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(f"the server wrote no profile:\n{_tail(server.log)}")
        time.sleep(0.05)
    written.replace(keep)


#: Where a function's own time goes, by the first pattern its file or name contains.
PROFILE_GROUPS: tuple[tuple[str, str], ...] = (
    ("select.epoll", "idle: waiting in epoll"),
    ("secp256k1", "secp256k1 recovery (coincurve)"),
    ("coincurve", "secp256k1 recovery (coincurve)"),
    ("identity/_keccak", "keccak256 (identity._keccak, ctypes)"),
    ("identity/_address", "EIP-55 checksums (identity._address)"),
    ("identity/reading", "Reading.from_json + validation (identity.reading)"),
    ("identity/eip712", "struct hash + recovery glue (identity.eip712)"),
    ("telemetry/ingest", "ingest pipeline (telemetry.ingest)"),
    ("api/routes/readings", "route + response building (api.routes.readings, pydantic)"),
    ("pydantic", "route + response building (api.routes.readings, pydantic)"),
    ("telemetry/models", "route + response building (api.routes.readings, pydantic)"),
    ("starlette/responses", "route + response building (api.routes.readings, pydantic)"),
    ("json/", "json module (request decode, response and values encode)"),
    ("chainsense/store", "store: chainsense.store (planning, checks)"),
    ("sqlalchemy", "store: SQLAlchemy"),
    ("aiosqlite", "store: driver (aiosqlite/asyncpg/greenlet)"),
    ("asyncpg", "store: driver (aiosqlite/asyncpg/greenlet)"),
    ("greenlet", "store: driver (aiosqlite/asyncpg/greenlet)"),
    ("uvicorn", "HTTP server (uvicorn, h11)"),
    ("h11", "HTTP server (uvicorn, h11)"),
    ("starlette", "framework (starlette, fastapi)"),
    ("fastapi", "framework (starlette, fastapi)"),
    ("asyncio", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
)


def _profile_groups(stats: pstats.Stats) -> Counter[str]:
    """Own time per group; a built-in's time goes to its callers' groups, in proportion to the
    time each caller spent in it."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]

    def group(func: tuple[str, int, str]) -> str | None:
        filename, _, name = func
        text = f"{filename}:{name}"
        for pattern, label in PROFILE_GROUPS:
            if pattern in text:
                return label
        return None if filename == "~" else "other"

    def owner(func: tuple[str, int, str], depth: int = 0) -> Counter[str]:
        own = group(func)
        if own is not None or depth > 3:
            return Counter({own or "other": 1.0})
        callers = raw[func][4]
        total = sum(c[3] for c in callers.values()) or 1.0
        shares: Counter[str] = Counter()
        for caller, c in callers.items():
            for label, share in owner(caller, depth + 1).items():
                shares[label] += share * c[3] / total
        return shares or Counter({"other": 1.0})

    groups: Counter[str] = Counter()
    for func, (_, _, tottime, _, _) in raw.items():
        for label, share in owner(func).items():
            groups[label] += tottime * share
    return groups


def _print_profile(title: str, path: Path, top: int = 15) -> None:
    if not path.exists():
        print(f"(no profile at {path})")
        return
    stats = pstats.Stats(str(path))
    groups = _profile_groups(stats)
    idle = groups.pop("idle: waiting in epoll", 0.0)
    busy = sum(groups.values())
    print(f"\n--- server profile, {title}: event-loop thread, cProfile ({path}) ---")
    print(f"busy {busy:.2f} s, idle in epoll {idle:.2f} s; busy time by group:")
    for label, seconds in groups.most_common():
        print(f"  {seconds / busy:6.1%}  {label}")
    stats.sort_stats("tottime").print_stats(top)


# --- main ----------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batches", type=_ints, default=[100, 500, 1000])
    parser.add_argument("--readings", type=int, default=24_000, help="per configuration")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the timed windows into DIR"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.readings = min(args.readings, 2_000)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}: use sqlite and/or postgresql")
    args.concurrency = max(1, min(args.concurrency, args.devices))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print(
        f"ChainSense ingest, end to end over HTTP on loopback: {args.readings:,} readings per "
        f"configuration, {args.devices} devices, {args.concurrency} requests in flight"
    )
    print(
        f"machine: {cores} cores ({usable} usable), {_cpu_model()}; python "
        f"{platform.python_version()}, keccak backend: {KECCAK_BACKEND}"
    )
    print(
        "server: "
        + (
            "bench/_server.py (the app as `chainsense serve` runs it, cProfiled while timed)"
            if args.profile
            else "`python -m chainsense serve`"
        )
        + ", one uvicorn worker, in its own process"
    )
    print(
        f"load average at the start: {_load()} (other work on the machine lowers every rate "
        "and the ceiling alike; compare ratios)",
        flush=True,
    )

    keys = _device_keys(args.devices)
    rows: list[Row] = []
    signed: Signed | None = None
    for backend in backends:
        backend_rows, signed = _run_backend(backend, args, keys, signed)
        rows += backend_rows

    print()
    print(
        f"{'backend':<11}{'batch':>6}{'readings':>9}{'stored':>9}{'wall s':>7}{'readings/s':>11}"
        f"{'ceiling/s':>10}{'ratio':>7}{'srv us/r':>10}{'ceil us/r':>10}{'cpu ratio':>10}"
        f"{'srv busy':>9}{'host busy':>10}{'loop: cpu/runq/sleep':>22}"
        f"{'all-core ceil':>14}{'ratio':>7}"
    )
    for row in rows:
        us, cpu_ratio = row.server_us, row.cpu_ratio
        busy = row.server_cpu_s / row.wall_s if row.server_cpu_s is not None else None
        loop = "n/a"
        if row.main_thread is not None:
            on, runq = row.main_thread
            loop = f"{on:.0%}/{runq:.0%}/{max(0.0, 1 - on - runq):.0%}"
        print(
            f"{row.backend:<11}{row.batch:>6}{row.readings:>9,}{row.tally.stored:>9,}"
            f"{row.wall_s:>7.2f}{row.rate:>11,.0f}{row.ceiling:>10,.0f}{row.ratio:>7.2f}"
            f"{_fmt(us, '.1f'):>10}{row.ceiling_cpu * 1e6:>10.1f}{_fmt(cpu_ratio, '.2f'):>10}"
            f"{_fmt(busy, '.0%'):>9}{_fmt(row.machine_cpu, '.0%'):>10}{loop:>22}"
            f"{row.ceiling_all:>14,.0f}{row.ratio_all:>7.2f}"
        )
    print(
        "ceiling: ReadingVerifier.recover on one pinned core, best of 3 before and 3 after each "
        "row; ratio = readings/s / ceiling/s (target >= 0.5 on SQLite with batches)"
    )
    print(
        f"all-core ceil: the same recovery in {cores} threads at once (libsecp256k1 releases the "
        "GIL); its ratio is readings/s against that, since the server may use every core too"
    )
    print(
        "srv us/r, ceil us/r: CPU microseconds per reading of the server process (all its "
        "threads; not PostgreSQL's own processes) and of the ceiling; cpu ratio = ceil / srv, what "
        "the server would reach with a core to itself and no waiting"
    )
    print(
        "srv busy: the server's CPU time / wall time (100% = one core); host busy: busy share of "
        f"all {cores} cores (client, Anvil, PostgreSQL and anything else running included)"
    )
    print(
        "loop: the server's main thread (the event loop), share of wall time on a CPU / runnable "
        "but waiting for a CPU (other load) / asleep (idle: waiting on the database, the "
        "network or a lock)"
    )
    sqlite_best = max((r.ratio for r in rows if r.backend == "sqlite"), default=None)
    if sqlite_best is not None:
        verdict = "meets" if sqlite_best >= 0.5 else "is BELOW"
        print(f"best SQLite ratio {sqlite_best:.2f} {verdict} the 0.5 target")
    sent = sum(r.readings for r in rows)
    failed = sent - sum(r.tally.stored for r in rows)
    reasons: Counter[str] = sum((r.tally.not_stored for r in rows), Counter())
    print(
        f"acknowledgements: {sent - failed:,} of {sent:,} readings stored"
        + (f"; {failed:,} NOT stored: {dict(reasons)}" if failed else " (all)")
    )
    print(f"load average at the end: {_load()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
