"""Real ``chainsense serve`` processes and real concurrent HTTP clients, for the rate-limit and
shedding tests (tests/e2e/test_limits.py) and their benchmark (bench/ratelimit.py)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chainsense.identity import DeviceKey, Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import free_port

__all__ = ["Serve", "Stats", "flood", "signed_readings"]

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")


class Serve:
    """``python -m chainsense serve`` on private ports and a private data dir (its own Anvil),
    with the given CHAINSENSE_* settings; API keys are made in its database before it starts."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.settings = settings
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.keys: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_keys(self, *names: str) -> None:
        from chainsense.store import Store

        async def create() -> None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            store = await Store.open(f"sqlite+aiosqlite:///{self.data_dir / 'chainsense.db'}")
            try:
                for name in names:
                    _, self.keys[name] = await store.api_keys.create(name=name, scope="admin")
            finally:
                await store.close()

        asyncio.run(create())

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        env.update(
            CHAINSENSE_DATA_DIR=str(self.data_dir),
            CHAINSENSE_PORT=str(self.port),
            CHAINSENSE_ANVIL_PORT=str(free_port()),
            CHAINSENSE_AI_ENABLED="false",
            CHAINSENSE_MARKET_AGENT="false",
            CHAINSENSE_ANCHORING="false",
        )
        env.update({f"CHAINSENSE_{k.upper()}": v for k, v in self.settings.items()})
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chainsense", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 300) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "serve died:\n" + self.log.read_text()
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError("serve did not become ready:\n" + self.log.read_text())

    @contextmanager
    def running(self) -> Iterator[Serve]:
        """Started and ready inside the block, stopped after it whatever happens."""
        self.start()
        try:
            self.wait_ready()
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def domain(self) -> tuple[int, str]:
        chain = httpx.get(self.url + "/v1/chain", timeout=30).json()
        return chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"]

    def register(self, key: DeviceKey, api_key: str) -> None:
        answer = httpx.post(
            self.url + "/v1/devices",
            json={"address": key.address},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        assert answer.status_code == 201, answer.text


def signed_readings(
    key: DeviceKey, domain: tuple[int, str], count: int
) -> Iterator[dict[str, Any]]:
    now = int(time.time() * 1000)
    for seq in range(1, count + 1):
        reading = Reading(key.address, seq, now + seq, COLD.id, (415, 620))
        signature = key.sign(reading, *domain)
        yield reading.to_json() | {"signature": "0x" + signature.hex()}


@dataclass
class Stats:
    """What one group of clients saw."""

    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ok: list[float] = field(default_factory=list)
    missing_retry_after: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, latency: float, retry_after: str | None) -> None:
        with self.lock:
            self.sent += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status < 300:
                self.latencies_ok.append(latency)
            if status in (429, 503) and not (retry_after or "").isdigit():
                self.missing_retry_after += 1

    def count(self, *statuses: int) -> int:
        return sum(self.statuses.get(s, 0) for s in statuses)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if s < 300)

    def summary(self) -> str:
        lat = sorted(self.latencies_ok)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p95 = lat[max(0, math.ceil(len(lat) * 0.95) - 1)] * 1000 if lat else float("nan")
        rate = self.ok / self.sent * 100 if self.sent else float("nan")
        return (
            f"sent {self.sent}, 2xx {self.ok} ({rate:.1f}%), 429 {self.count(429)}, "
            f"503 {self.count(503)}, other {self.statuses}, errors {self.errors}; "
            f"2xx latency p50 {p50:.1f} ms, p95 {p95:.1f} ms"
        )


Request = Callable[[httpx.Client], httpx.Response]


def flood(groups: list[tuple[Stats, int, float, Request]], seconds: float) -> float:
    """Run every group at once for ``seconds``: ``(stats, clients, pause_s, request)`` starts
    ``clients`` threads that each send ``request`` back to back (pausing ``pause_s`` between
    two). Every client is built before the clock starts. Returns the elapsed time."""
    window = [0.0, 0.0]  # start, stop

    def go() -> None:
        window[0] = time.monotonic()
        window[1] = window[0] + seconds

    ready = threading.Barrier(sum(clients for _, clients, _, _ in groups), action=go)

    def client(stats: Stats, pause: float, request: Request) -> None:
        with httpx.Client(timeout=30) as http:
            ready.wait()
            while time.monotonic() < window[1]:
                began = time.perf_counter()
                try:
                    answer = request(http)
                except (httpx.HTTPError, StopIteration):
                    with stats.lock:
                        stats.errors += 1
                    continue
                stats.record(
                    answer.status_code,
                    time.perf_counter() - began,
                    answer.headers.get("retry-after"),
                )
                if pause:
                    time.sleep(pause)

    threads = [
        threading.Thread(target=client, args=(stats, pause, request))
        for stats, clients, pause, request in groups
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - window[0]
