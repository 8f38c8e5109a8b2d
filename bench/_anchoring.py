"""The on-chain half of ``bench/anchor.py``: anchoring delay at a steady rate, and gas per reading.

``python -m chainsense serve`` runs on its defaults (its own Anvil, a fresh SQLite data dir, the
default batch policy) in its own process. Devices are registered through the API and every
reading is signed before timing. Then readings are POSTed at a steady rate (default 1000/s, in
requests of 100 every 0.1 s) for ``seconds``; afterwards the script waits until nothing is left
to anchor and reads, from the platform's database, each reading's ``received_at`` (when it was
stored, i.e. acknowledged) and its batch's ``anchored_at`` (when the anchor had its
confirmations). Delay = anchored_at - received_at; reported as p50/p95 and as ratios to the
batch age limit (the policy's designed bound for the sealing part).

Gas: the ``gasUsed`` of every anchor transaction of the run, divided by its batch's reading
count, against the reference measured in the same run on the same contract: anchoring one
reading per transaction (``anchor(leaf, 1, ref)``, 20 times).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from hexbytes import HexBytes
from web3 import Web3

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.contracts import load_artifact
from chainsense.identity import DeviceKey, Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

SCHEMA = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
DEVICES = 10
PER_REQUEST = 100
TICK_S = 0.1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    rpc_url: str
    key: str
    data_dir: Path
    log: Path


def _start(workdir: Path) -> Server:
    port, anvil_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    env |= {
        "CHAINSENSE_DATA_DIR": str(workdir / "data"),
        "CHAINSENSE_PORT": str(port),
        "CHAINSENSE_ANVIL_PORT": str(anvil_port),
        "CHAINSENSE_RATE_LIMIT_ENABLED": "false",  # measured here: anchoring, not rate limits
    }
    created = subprocess.run(
        [sys.executable, "-m", "chainsense", "apikey", "create", "--name", "bench", "--scope",
         "admin"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chainsense", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(
        process,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{anvil_port}",
        created.stdout.strip().splitlines()[-1],
        workdir / "data",
        log,
    )
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            raise RuntimeError("the server exited early:\n" + log.read_text()[-3000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline:
            raise RuntimeError("the server was not ready in time")
        time.sleep(0.2)


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(60)
        except subprocess.TimeoutExpired:
            server.process.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class AnchoringFigures:
    readings: int
    seconds: float
    sent_rate: float
    batches: int
    mean_batch: float
    delay_p50: float
    delay_p95: float
    max_age: float
    gas_per_reading: float
    gas_single: float


def measure(rate: int = 1000, seconds: float = 20.0, log: Any = print) -> AnchoringFigures:
    """Run the server, stream ``rate`` readings/s for ``seconds``, and measure delay and gas."""
    with tempfile.TemporaryDirectory(prefix="chainsense-bench-anchor-") as tmp:
        server = _start(Path(tmp))
        try:
            return _run(server, rate, seconds, log)
        finally:
            _stop(server)


def _run(server: Server, rate: int, seconds: float, log: Any) -> AnchoringFigures:
    auth = {"Authorization": f"Bearer {server.key}"}
    http = httpx.Client(base_url=server.url, timeout=30)
    chain = http.get("/v1/chain").json()
    chain_id = chain["chain_id"]
    registry = chain["contracts"]["DeviceRegistry"]["address"]
    anchor_address = chain["contracts"]["ReadingAnchor"]["address"]
    seeds = (hashlib.sha256(f"bench-anchor-{i}".encode()).digest() for i in range(DEVICES))
    keys = [DeviceKey(seed) for seed in seeds]
    for key in keys:
        response = http.post("/v1/devices", json={"address": key.address}, headers=auth)
        response.raise_for_status()
    total = int(rate * seconds)
    per_device = total // DEVICES
    log(f"signing {per_device * DEVICES} readings…")
    now_ms = int(time.time() * 1000)
    streams = []
    for key in keys:
        rows = []
        for seq in range(1, per_device + 1):
            reading = Reading(key.address, seq, now_ms + seq, SCHEMA.id, (400, 600))
            signature = key.sign(reading, chain_id, registry)
            rows.append(reading.to_json() | {"signature": "0x" + signature.hex()})
        streams.append(rows)
    interleaved = [streams[d][i] for i in range(per_device) for d in range(DEVICES)]
    per_tick = max(1, int(rate * TICK_S))
    bodies = [
        json.dumps({"readings": interleaved[i : i + per_tick]}).encode()
        for i in range(0, len(interleaved), per_tick)
    ]
    log(f"streaming {len(interleaved)} readings at {rate}/s for {seconds:g} s…")
    start = time.monotonic()
    for n, body in enumerate(bodies):
        wait = start + n * TICK_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        response = http.post(
            "/v1/readings", content=body, headers={"content-type": "application/json"}
        )
        response.raise_for_status()
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + 120
    while (status := http.get("/v1/anchoring", headers=auth).json())["backlog_readings"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"anchoring did not catch up: {status}")
        time.sleep(0.2)

    db = sqlite3.connect(server.data_dir / "chainsense.db")
    rows = db.execute(
        "SELECT r.received_at, b.anchored_at FROM readings r JOIN batches b ON r.batch_id = b.id"
    ).fetchall()
    batches = db.execute("SELECT tx_hash, reading_count FROM batches").fetchall()
    db.close()
    delays = [
        (datetime.fromisoformat(a) - datetime.fromisoformat(r)).total_seconds() for r, a in rows
    ]
    w3 = Web3(Web3.HTTPProvider(server.rpc_url))
    gas = [
        (w3.eth.get_transaction_receipt(HexBytes(tx))["gasUsed"], count) for tx, count in batches
    ]
    gas_per_reading = sum(g for g, _ in gas) / sum(c for _, c in gas)

    # reference: one reading per anchor transaction, same contract, same run
    anchorer = w3.eth.account.from_key(ANVIL_DEV_KEYS[2])
    contract = w3.eth.contract(address=anchor_address, abi=load_artifact("ReadingAnchor").abi)
    single: list[int] = []
    nonce = w3.eth.get_transaction_count(anchorer.address, "pending")
    for i in range(20):
        root = hashlib.sha256(f"single-{i}-{time.time()}".encode()).digest()
        tx = contract.functions.anchor(root, 1, bytes(32)).build_transaction(
            {"from": anchorer.address, "nonce": nonce + i, "chainId": chain_id}
        )
        signed = anchorer.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        single.append(int(receipt["gasUsed"]))
    status = http.get("/v1/anchoring", headers=auth).json()
    http.close()
    return AnchoringFigures(
        readings=len(delays),
        seconds=elapsed,
        sent_rate=len(interleaved) / elapsed,
        batches=len(batches),
        mean_batch=statistics.mean(c for _, c in batches),
        delay_p50=_percentile(delays, 0.50),
        delay_p95=_percentile(delays, 0.95),
        max_age=float(status["max_age"]),
        gas_per_reading=gas_per_reading,
        gas_single=statistics.mean(single),
    )


if __name__ == "__main__":
    print("bench/_anchoring.py is a helper of bench/anchor.py: nothing to run alone")
