"""MQTT ingest end to end: 200 concurrent devices, one signed reading per message, each device
waiting for its receipt before publishing the next (what a device must do: docs/mqtt.md), against
the signature-recovery ceiling and the HTTP path measured in the same run.

    .venv/bin/python bench/mqtt.py [--devices 200] [--per-device 30] [--quick]

A private Mosquitto (unbounded queue, no persistence) runs on a free port, and ``python -m
chainsense serve`` in its own process (its own Anvil, SQLite in a fresh data dir, one uvicorn
worker) bridged to it with ``CHAINSENSE_MQTT_URL``. Devices are registered through the API; every
reading is signed and encoded BEFORE timing. Then:

- MQTT: each device is its own gmqtt connection in this process, publishing QoS 1 with a
  Response Topic and Correlation Data; a reading counts when its receipt says ``stored``;
  receipt latency = publish to receipt, per message;
- HTTP (same server, the devices' next seqs): each device POSTs one reading per request, the same
  window of one, over a pool of 200 connections.

The ceiling is ``ReadingVerifier.recover`` on one pinned core (bench/ingest.py's helper, best of
3, before and after): ratio = readings/s / ceiling. Every receipt and acknowledgement is checked;
a run with any reading not stored fails. The machine is shared: read the ratios, not the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from ingest import (
    Server,
    _ceiling,
    _device_keys,
    _free_port,
    _load,
    _log,
    _register,
    _sign_all,
    _stop,
    _wait_ready,
)


@contextlib.contextmanager
def _broker(workdir: Path) -> Iterator[int]:
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\nmax_connections -1\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def _serve(workdir: Path, broker_port: int) -> Iterator[Server]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    env |= {
        "CHAINSENSE_DATA_DIR": str(workdir / "data"),
        "CHAINSENSE_PORT": str(port),
        "CHAINSENSE_ANVIL_PORT": str(_free_port()),
        "CHAINSENSE_MQTT_URL": f"mqtt://127.0.0.1:{broker_port}",
        # 200 devices from one address here, from 200 in the field: the per-address limit of
        # unauthenticated routes would measure itself (the per-device limits stay on)
        "CHAINSENSE_RATE_LIMIT_ADDRESS_RATE": "100000",
        "CHAINSENSE_RATE_LIMIT_ADDRESS_BURST": "100000",
    }
    created = subprocess.run(
        [sys.executable, "-m", "chainsense", "apikey", "create", "--name", "bench",
         "--scope", "operator"],
        env=env, cwd=workdir, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chainsense", "serve"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", created.stdout.strip(), log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def _mqtt_run(port: int, streams: list[tuple[str, list[bytes]]]) -> tuple[float, list[float]]:
    """Every device publishes its payloads one at a time, each after the previous receipt."""
    import gmqtt  # type: ignore[import-untyped]

    latencies: list[float] = []
    clients: list[Any] = []
    waiters: list[dict[bytes, asyncio.Future[tuple[str, Any]]]] = []
    for address, _ in streams:
        waiting: dict[bytes, asyncio.Future[tuple[str, Any]]] = {}

        def on_message(
            client: Any, topic: str, payload: bytes, qos: int, props: Any,
            waiting: dict[bytes, asyncio.Future[tuple[str, Any]]] = waiting,
        ) -> int:  # fmt: skip
            future = waiting.pop(props["correlation_data"][0], None)
            if future is not None:
                status = dict(props.get("user_property") or []).get("status", "0")
                future.set_result((status, json.loads(payload)))
            return 0

        client = gmqtt.Client(f"bench-{uuid.uuid4().hex[:10]}")
        client.on_message = on_message
        await client.connect("127.0.0.1", port)
        client.subscribe(f"chainsense/v1/devices/{address}/receipts/bench", qos=1)
        clients.append(client)
        waiters.append(waiting)
    await asyncio.sleep(1.0)  # subscriptions settled

    async def device(i: int) -> None:
        address, payloads = streams[i]
        client, waiting = clients[i], waiters[i]
        topic = f"chainsense/v1/devices/{address}/readings"
        loop = asyncio.get_running_loop()
        for payload in payloads:
            correlation = uuid.uuid4().bytes
            future: asyncio.Future[tuple[str, Any]] = loop.create_future()
            waiting[correlation] = future
            t0 = time.perf_counter()
            client.publish(
                topic, payload, qos=1, correlation_data=correlation,
                response_topic=f"chainsense/v1/devices/{address}/receipts/bench",
            )  # fmt: skip
            status, body = await asyncio.wait_for(future, 120)
            latencies.append(time.perf_counter() - t0)
            if status != "201" or body.get("status") != "stored":
                raise RuntimeError(f"not stored: {status} {body}")

    t0 = time.perf_counter()
    await asyncio.gather(*(device(i) for i in range(len(streams))))
    elapsed = time.perf_counter() - t0
    for client in clients:
        await client.disconnect()
    return elapsed, latencies


async def _http_run(base_url: str, streams: list[list[bytes]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=len(streams), max_keepalive_connections=len(streams))
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:

        async def device(payloads: list[bytes]) -> None:
            for payload in payloads:
                t0 = time.perf_counter()
                for attempt in range(5):  # a kept-alive connection the server closed: again
                    try:
                        response = await client.post(
                            "/v1/readings",
                            content=payload,
                            headers={"content-type": "application/json"},
                        )
                        break
                    except httpx.TransportError:
                        if attempt == 4:
                            raise
                latencies.append(time.perf_counter() - t0)
                # 200 = an identical replay of a reading stored by an attempt that lost its answer
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"not stored: {response.status_code} {response.text}")

        t0 = time.perf_counter()
        await asyncio.gather(*(device(p) for p in streams))
        return time.perf_counter() - t0, latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--per-device", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="20 devices, 10 readings each")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.per_device = 20, 10
    n, per = args.devices, args.per_device
    _log(f"load average {_load()}; {n} devices x {per} readings per transport")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        workdir = Path(tmp)
        with _broker(workdir) as port, _serve(workdir, port) as server:
            keys = _device_keys(n)
            _log("registering devices")
            domain = _register(server, keys)
            signed = _sign_all(keys, 2 * per, domain)
            sample = [(r, s) for rows in signed.per_device for r, s, _ in rows][:8000]
            mqtt_streams = [
                (k.address.lower(), [json.dumps(j).encode() for _, _, j in rows[:per]])
                for k, rows in zip(keys, signed.per_device, strict=True)
            ]
            http_streams = [[json.dumps(j).encode() for _, _, j in rows[per:]] for rows in
                            signed.per_device]  # fmt: skip
            before, _ = _ceiling(sample, domain)
            _log("MQTT run")
            mqtt_s, mqtt_lat = asyncio.run(_mqtt_run(port, mqtt_streams))
            _log("HTTP run")
            http_s, http_lat = asyncio.run(_http_run(server.base_url, http_streams))
            after, _ = _ceiling(sample, domain)
            ceiling = max(before, after)
            total = n * per
            mqtt_rate, http_rate = total / mqtt_s, total / http_s
            print(f"\nload average after: {_load()}")
            print(f"signature-recovery ceiling, 1 pinned core: {ceiling:,.0f} readings/s")
            print(f"{'transport':10} {'readings/s':>11} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8}")
            for name, rate, lat in (("MQTT", mqtt_rate, mqtt_lat), ("HTTP", http_rate, http_lat)):
                print(
                    f"{name:10} {rate:11,.0f} {rate / ceiling:6.3f} "
                    f"{_percentile(lat, 0.5) * 1000:8.1f} {_percentile(lat, 0.99) * 1000:8.1f}"
                )
            print(f"MQTT / HTTP (one reading per message/request): {mqtt_rate / http_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
