"""Crash safety with real process kills: ``chainsense serve`` (with its own Anvil) is SIGKILLed at
each named point of the anchorer, and at random moments while readings stream in. After a clean
restart every acknowledged reading must be anchored exactly once: it is in exactly one batch,
its proof leads to a root the chain has anchored, and the chain holds exactly one RootAnchored
event per root.

A ``kill -9`` of ChainSense also kills its Anvil, which loses what it mined in the last state
interval (1 s): anchors recorded just before the kill can vanish from the chain. The anchorer's
start-up re-check must notice and anchor them again, which this test exercises too.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from chainsense.identity import DeviceKey, Reading
from chainsense.provenance import ProofDocument, verify_proof
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import free_port

pytestmark = [pytest.mark.chain, pytest.mark.slow]

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")


class Serve:
    """``chainsense serve`` as a child process on private ports and a private data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.anvil_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "serve.log"
        self.reader: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, crash_at: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        env.update(
            CHAINSENSE_DATA_DIR=str(self.data_dir),
            CHAINSENSE_PORT=str(self.port),
            CHAINSENSE_ANVIL_PORT=str(self.anvil_port),
            CHAINSENSE_BATCH_MAX_SIZE="8",
            CHAINSENSE_BATCH_MAX_AGE="0.2",
            CHAINSENSE_REORG_CHECK_INTERVAL="0.5",
            CHAINSENSE_RATE_LIMIT_ENABLED="false",  # a device streams up to 50 requests/s here
        )
        if crash_at:
            env["CHAINSENSE_CRASH_AT"] = crash_at
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chainsense", *args],
            env=self.env(None),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    def start(self, crash_at: str | None = None) -> bool:
        """Start and wait until ready; False if a crash point killed it while starting (left-over
        work from the previous run can reach the point before the API is up)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chainsense", "serve"],
                env=self.env(crash_at),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log.read_text()
                assert crash_at is not None, "serve died while starting:\n" + log
                assert self.proc.returncode == -signal.SIGKILL, log
                assert f"SIGKILL at {crash_at}" in log.rstrip().splitlines()[-1], log
                return False
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not become ready:\n" + self.log.read_text())

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def wait_dead(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)


class Device:
    """A device that signs readings in seq order and remembers which were acknowledged."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.key = DeviceKey.generate()
        self.next_seq = 1
        self.acked: dict[int, int] = {}  # seq -> reading id
        self.unsent: list[dict[str, Any]] = []
        self.domain: tuple[int, str] | None = None

    def sign(self, n: int) -> None:
        assert self.domain is not None
        for _ in range(n):
            reading = Reading(
                self.key.address, self.next_seq, int(time.time() * 1000), COLD.id, (400, 600)
            )
            signature = self.key.sign(reading, *self.domain)
            self.unsent.append(reading.to_json() | {"signature": "0x" + signature.hex()})
            self.next_seq += 1

    def flush(self) -> bool:
        """Send what is unsent; keep it if the server does not answer (it is not acknowledged)."""
        if not self.unsent:
            return True
        try:
            response = httpx.post(
                self.serve.url + "/v1/readings", json={"readings": self.unsent}, timeout=10
            )
        except httpx.HTTPError:
            return False
        assert response.status_code == 200, response.text
        for result in response.json()["results"]:
            assert result["status"] in ("stored", "duplicate"), result
            self.acked[result["seq"]] = result["id"]
        self.unsent = []
        return True


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path / "data")
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def _register(serve: Serve, device: Device) -> None:
    operator = serve.cli("apikey", "create", "--name", "crash-test", "--scope", "operator")
    reader = serve.cli("apikey", "create", "--name", "check", "--scope", "reader")
    serve.reader = {"Authorization": f"Bearer {reader}"}
    assert serve.start()
    chain = httpx.get(serve.url + "/v1/chain", timeout=10).json()
    device.domain = (chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"])
    response = httpx.post(
        serve.url + "/v1/devices",
        json={"address": device.key.address},
        headers={"Authorization": f"Bearer {operator}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    time.sleep(2.5)  # past Anvil's 1 s state interval: the registration survives a kill -9
    serve.kill()


def _wait_anchored(serve: Serve) -> None:
    deadline = time.monotonic() + 90
    while True:
        status = httpx.get(serve.url + "/v1/anchoring", headers=serve.reader, timeout=10).json()
        if status["backlog_readings"] == 0:
            return
        assert time.monotonic() < deadline, f"anchoring did not catch up: {status}"
        time.sleep(0.2)


def _check_everything_anchored_once(serve: Serve, device: Device) -> None:
    headers = serve.reader
    _wait_anchored(serve)
    # every acknowledged reading is stored once and has a proof against an anchored root
    page = httpx.get(
        serve.url + "/v1/readings",
        params={"device": device.key.address, "limit": 1000},
        headers=headers,
        timeout=10,
    ).json()
    stored = {r["seq"]: r["id"] for r in page["items"]}
    assert stored == device.acked | {s: stored[s] for s in stored if s not in device.acked}
    assert all(device.acked[s] == stored[s] for s in device.acked)
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{serve.anvil_port}"))
    chain = httpx.get(serve.url + "/v1/chain", timeout=10).json()
    anchor = w3.eth.contract(
        address=chain["contracts"]["ReadingAnchor"]["address"],
        abi=_anchor_abi(),
    )
    roots: set[bytes] = set()
    for seq, reading_id in sorted(stored.items()):
        response = httpx.get(
            f"{serve.url}/v1/readings/{reading_id}/proof", headers=headers, timeout=10
        )
        assert response.status_code == 200, (seq, response.text)
        doc = ProofDocument.from_json(response.json())
        assert verify_proof(doc.proof, doc.root, doc.leaf)
        on_chain = anchor.functions.anchorOf(doc.root).call()
        assert (on_chain[1], on_chain[2]) == (doc.anchor.block_number, doc.anchor.block_time)
        roots.add(doc.root)
    # exactly once: one RootAnchored event per root on the final chain, one batch per root
    batches = httpx.get(
        serve.url + "/v1/batches", params={"limit": 1000}, headers=headers, timeout=10
    ).json()["items"]
    assert {bytes.fromhex(b["root"][2:]) for b in batches} >= roots
    assert sum(b["reading_count"] for b in batches) == len(stored)
    for root in roots:
        events = anchor.events.RootAnchored.get_logs(from_block=0, argument_filters={"root": root})
        assert len(events) == 1, f"root 0x{root.hex()} anchored {len(events)} times"


def _anchor_abi() -> Any:
    from chainsense.contracts import load_artifact

    return load_artifact("ReadingAnchor").abi


@pytest.mark.timeout(600)
def test_kill_9_at_each_anchoring_step_then_restart_anchors_everything_once(
    serve: Serve,
) -> None:
    device = Device(serve)
    _register(serve, device)
    for point in ("after-seal", "after-send", "after-receipt"):
        # a clean run first recovers what the previous crash left, so that this run reaches
        # `point` with the new readings
        assert serve.start()
        _wait_anchored(serve)
        serve.stop()
        assert serve.start(crash_at=point)
        device.sign(5)
        assert device.flush()  # acknowledged before the anchorer reaches the crash point
        assert serve.wait_dead() == -signal.SIGKILL, f"no crash at {point}"
        assert f"SIGKILL at {point}" in serve.log.read_text().rstrip().splitlines()[-1]
    assert serve.start()
    device.flush()
    _check_everything_anchored_once(serve, device)
    serve.stop()


@pytest.mark.timeout(600)
def test_kill_9_at_random_moments_under_load_then_restart_anchors_everything_once(
    serve: Serve,
) -> None:
    device = Device(serve)
    _register(serve, device)
    rng = random.Random(20261121)
    for _ in range(3):
        assert serve.start()
        stop = threading.Event()

        def stream(stop: threading.Event = stop) -> None:
            while not stop.is_set():
                device.sign(3)
                if not device.flush():
                    return
                time.sleep(0.02)

        sender = threading.Thread(target=stream)
        sender.start()
        time.sleep(rng.uniform(0.3, 1.5))
        serve.kill()
        stop.set()
        sender.join(30)
    assert serve.start()
    assert device.flush()  # what was in flight at the kill is sent again (same seqs)
    _check_everything_anchored_once(serve, device)
    serve.stop()
