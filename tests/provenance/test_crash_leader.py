"""``kill -9`` of the leader under load, with several processes: ``chainsense serve --workers 2``
on a fresh PostgreSQL database and the Anvil it starts, devices sending signed one-reading
requests from threads of their own. The worker that holds the anchorer's advisory lock (read
from ``pg_locks``) is SIGKILLed mid-stream; the other worker must take the role over within
seconds (uvicorn's supervisor also starts a replacement worker), and then:

- every acknowledged reading is stored exactly once, with the id its acknowledgement gave;
- every reading is in exactly one batch, every batch's root is the Merkle root of exactly its
  readings, and every batch is anchored;
- the chain holds exactly one ``RootAnchored`` event per batch root and none for any other root,
  in the transaction and block the database recorded;
- ``/metrics`` shows one live leader, and not the dead worker.

The single-process crash tests (kill -9 at each anchoring step, at random moments) are in
test_crash.py; this one is about the takeover between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from web3 import Web3

from chainsense.contracts import load_artifact
from chainsense.identity import DeviceKey, Reading
from chainsense.provenance import ProofDocument, verify_proof
from chainsense.provenance.merkle import MerkleTree
from chainsense.store import Store
from chainsense.store.leader import _NAMESPACE as LEADER_NAMESPACE
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import free_port, temp_postgres_database

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
DEVICES = 6
LOAD_BEFORE_KILL_S = 3.0
LOAD_AFTER_TAKEOVER_S = 3.0
TAKEOVER_LIMIT_S = 10.0  # the election retries every second
REPLACE_LIMIT_S = 10.0  # uvicorn's supervisor checks its workers every 0.5 s


@dataclass
class Cluster:
    """``chainsense serve --workers 2`` on private ports, a private data dir and database."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    anvil_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    keys: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """Settings of the test's own, over the ones below."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "serve.log"

    @property
    def dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def start(self) -> None:
        async def create_keys() -> None:
            store = await Store.open(self.database_url)  # migrates the fresh database
            try:
                for scope in ("operator", "reader"):
                    _, self.keys[scope] = await store.api_keys.create(name=scope, scope=scope)
            finally:
                await store.close()

        asyncio.run(create_keys())
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        env.update(
            CHAINSENSE_DATA_DIR=str(self.data_dir),
            CHAINSENSE_DATABASE_URL=self.database_url,
            CHAINSENSE_ANVIL_PORT=str(self.anvil_port),
            CHAINSENSE_BATCH_MAX_SIZE="8",  # many small batches: the kill lands mid-anchoring
            CHAINSENSE_BATCH_MAX_AGE="0.2",
            CHAINSENSE_RATE_LIMIT_ENABLED="false",
            CHAINSENSE_DEMO_FLEET="false",
            CHAINSENSE_AI_ENABLED="false",
            CHAINSENSE_MARKET_AGENT="false",
        )
        env.update(self.env)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chainsense", "serve", "--workers=2", f"--port={self.port}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "serve died while starting:\n" + self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(self.url + "/readyz", timeout=2).status_code == 200
                if ready and len(self.workers()) == 2 and "anchorer" in self.leaders():
                    return
            time.sleep(0.2)
        raise AssertionError("serve did not become ready:\n" + self.log.read_text())

    def workers(self) -> set[int]:
        """The worker processes (uvicorn's spawned children of the serve process)."""
        assert self.proc is not None
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
                if ppid == self.proc.pid and b"spawn_main" in cmdline:
                    found.add(int(entry.name))
        return found

    def leaders(self) -> dict[str, int]:
        """Role -> OS pid of the process whose election session holds the role's lock."""

        async def query() -> list[str]:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                # only the election locks (the first key is ChainSense's namespace): during a
                # start the migration's transaction-scoped advisory lock is held too, by a
                # session that is not an election session (CI saw its empty name)
                rows = await conn.fetch(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
                    "AND a.datname = current_database() AND l.classid = $1::oid",
                    LEADER_NAMESPACE & 0xFFFFFFFF,
                )
            finally:
                await conn.close()
            return [r["application_name"] for r in rows]

        out = {}
        for name in asyncio.run(query()):
            prefix, role, pid = name.split(":")
            assert prefix == "chainsense-leader", name
            assert role not in out, f"two sessions hold the {role} lock"
            out[role] = int(pid)
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # stops the workers, then the dev chain
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers left behind, if any
        _kill_anvil_on(self.anvil_port)  # Anvil runs in a session of its own


def _kill_anvil_on(port: int) -> None:
    """SIGKILL the Anvil this test started (found by its private port), if still running."""
    wanted = f"--port\x00{port}\x00".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ProcessLookupError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"anvil" in cmdline.split(b"\x00", 1)[0] and wanted in cmdline:
                    os.kill(int(entry.name), signal.SIGKILL)


class Device(threading.Thread):
    """Sends one signed reading per request, in seq order, and re-sends the same reading until
    it is acknowledged (201 stored, or 200 for a reading an unanswered request had stored)."""

    def __init__(self, cluster: Cluster, domain: tuple[int, str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.domain = domain
        self.key = DeviceKey.generate()
        self.stop_sending = stop
        self.acked: dict[int, int] = {}  # seq -> reading id
        self.replays = 0
        self.errors = 0
        self.unexpected: list[str] = []

    def run(self) -> None:
        seq = 1
        client = httpx.Client(base_url=self.cluster.url, timeout=10)
        try:
            while not self.stop_sending.is_set():
                reading = Reading(self.key.address, seq, int(time.time() * 1000), COLD.id, (4, 6))
                signature = self.key.sign(reading, *self.domain)
                body = reading.to_json() | {"signature": "0x" + signature.hex()}
                deadline = time.monotonic() + 60
                while True:  # this reading until acknowledged: a device's seq never skips
                    try:
                        response = client.post("/v1/readings", json=body)
                    except httpx.HTTPError:
                        self.errors += 1  # its worker was killed: not acknowledged; again
                        client.close()
                        client = httpx.Client(base_url=self.cluster.url, timeout=10)
                    else:
                        if response.status_code in (200, 201):
                            self.acked[seq] = response.json()["id"]
                            self.replays += response.status_code == 200
                            break
                        # 403 before the first acknowledgement: the worker's registry view
                        # has not polled the registration yet (every second)
                        early = response.status_code == 403 and not self.acked
                        if response.status_code != 503 and not early:
                            self.unexpected.append(f"{response.status_code} {response.text}")
                            return
                        self.errors += 1
                    if time.monotonic() > deadline:
                        self.unexpected.append(f"seq {seq} not acknowledged in 60 s")
                        return
                    time.sleep(0.1)
                seq += 1
                time.sleep(0.01)
        finally:
            client.close()


@contextlib.contextmanager
def cluster_on_a_new_database(tmp_path: Path, prefix: str) -> Iterator[Cluster]:
    """A Cluster (not started) on a fresh PostgreSQL database, stopped and dropped after."""
    with temp_postgres_database(prefix) as url:
        running = Cluster(tmp_path / "data", url)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with cluster_on_a_new_database(tmp_path, "chainsense_test_leader") as running:
        yield running


@pytest.mark.timeout(420)
def test_kill_9_of_the_leader_under_load_moves_leadership_and_loses_nothing(
    cluster: Cluster,
) -> None:
    t0 = time.monotonic()
    cluster.start()
    ready_s = time.monotonic() - t0
    with httpx.Client(base_url=cluster.url, timeout=60) as api:
        chain = api.get("/v1/chain").json()
        domain = (chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"])
        stop = threading.Event()
        devices = [Device(cluster, domain, stop) for _ in range(DEVICES)]
        for device in devices:  # one keep-alive connection: one worker sends the operator's txs
            answer = api.post(
                "/v1/devices",
                json={"address": device.key.address},
                headers=cluster.auth("operator"),
            )
            assert answer.status_code == 201, answer.text

    for device in devices:
        device.start()
    time.sleep(LOAD_BEFORE_KILL_S)
    workers = cluster.workers()
    leader = cluster.leaders()["anchorer"]
    assert leader in workers, (leader, workers)  # a worker of this serve leads
    acked_before = sum(len(d.acked) for d in devices)
    assert acked_before > 0
    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    while True:
        successor = cluster.leaders().get("anchorer")
        if successor is not None and successor != leader:
            break
        assert time.monotonic() - killed_at < TAKEOVER_LIMIT_S, "no takeover:\n" + _tail(cluster)
        time.sleep(0.05)
    takeover_s = time.monotonic() - killed_at
    while True:  # the supervisor sees the death and starts a replacement worker
        current = cluster.workers()
        if leader not in current and len(current) == 2:
            break
        assert time.monotonic() - killed_at < REPLACE_LIMIT_S, "not replaced:\n" + _tail(cluster)
        time.sleep(0.05)
    replaced_s = time.monotonic() - killed_at
    assert successor in cluster.workers() | workers
    time.sleep(LOAD_AFTER_TAKEOVER_S)
    stop.set()
    for device in devices:
        device.join(90)
        assert not device.is_alive()
        assert device.unexpected == [], device.unexpected
    acked = {d.key.address: d.acked for d in devices}
    total = sum(len(a) for a in acked.values())
    assert total > acked_before  # the load went on after the takeover
    print(
        f"\nleader {leader} killed after {acked_before} acknowledged readings; worker "
        f"{successor} took over in {takeover_s:.2f} s (a replacement worker started after "
        f"{replaced_s:.2f} s); {total} acknowledged in all, "
        f"{sum(d.errors for d in devices)} requests failed (connection reset or 503) and were "
        f"sent again, {sum(d.replays for d in devices)} of them had been stored (200 replay)"
    )

    loaded_s = time.monotonic() - t0
    _wait_anchored(cluster)
    anchored_s = time.monotonic() - t0
    stored, batches = asyncio.run(_database(cluster))
    _check_readings(acked, stored)
    _check_batches(stored, batches)
    _check_chain(cluster, chain["contracts"]["ReadingAnchor"]["address"], batches)
    _check_some_proofs(cluster, acked)
    _check_leader_metric(cluster, dead=leader, leader=cluster.leaders()["anchorer"])
    _check_anchoring_status_on_every_worker(cluster)
    print(
        f"phases: serve --workers 2 ready after {ready_s:.1f} s, load over at {loaded_s:.1f} s, "
        f"all anchored at {anchored_s:.1f} s, checked at {time.monotonic() - t0:.1f} s"
    )


def _tail(cluster: Cluster) -> str:
    return "\n".join(cluster.log.read_text(errors="replace").splitlines()[-40:])


def _wait_anchored(cluster: Cluster) -> None:
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=cluster.url, timeout=10) as api:
        while True:
            status = api.get("/v1/anchoring", headers=cluster.auth("reader")).json()
            if status["backlog_readings"] == 0:
                return
            assert time.monotonic() < deadline, f"anchoring stalled: {status}\n{_tail(cluster)}"
            time.sleep(0.2)


async def _database(cluster: Cluster) -> tuple[list[Any], list[Any]]:
    conn = await asyncpg.connect(cluster.dsn, timeout=10)
    try:
        stored = await conn.fetch(
            "SELECT id, device, seq, struct_hash, batch_id FROM readings ORDER BY id"
        )
        batches = await conn.fetch(
            "SELECT id, root, reading_count, state, tx_hash, block_number FROM batches"
        )
    finally:
        await conn.close()
    return list(stored), list(batches)


def _check_readings(acked: dict[str, dict[int, int]], stored: list[Any]) -> None:
    """Every acknowledged reading stored exactly once, under the acknowledged id; nothing else."""
    keys = [(r["device"], r["seq"]) for r in stored]
    assert len(keys) == len(set(keys)), "a (device, seq) stored twice"
    by_key = {(r["device"], r["seq"]): r["id"] for r in stored}
    expected = {(device, seq): rid for device, seqs in acked.items() for seq, rid in seqs.items()}
    assert by_key == expected


def _check_batches(stored: list[Any], batches: list[Any]) -> None:
    """Every reading in one batch; each batch anchored, its root over exactly its readings."""
    assert all(r["batch_id"] is not None for r in stored), "a reading never sealed"
    members: dict[int, list[bytes]] = {}
    for r in stored:
        members.setdefault(r["batch_id"], []).append(bytes(r["struct_hash"]))
    assert {b["id"] for b in batches} == set(members), "an empty batch, or a missing one"
    assert len({bytes(b["root"]) for b in batches}) == len(batches)
    for b in batches:
        assert b["state"] == "anchored", dict(b)
        assert b["reading_count"] == len(members[b["id"]])
        assert MerkleTree(members[b["id"]]).root == bytes(b["root"])


def _check_chain(cluster: Cluster, address: str, batches: list[Any]) -> None:
    """One RootAnchored event per batch root, where the database says, and no other."""
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{cluster.anvil_port}"))
    anchor = w3.eth.contract(address=address, abi=load_artifact("ReadingAnchor").abi)
    events = anchor.events.RootAnchored.get_logs(from_block=0)
    on_chain: dict[bytes, list[Any]] = {}
    for event in events:
        on_chain.setdefault(bytes(event["args"]["root"]), []).append(event)
    twice = {root.hex(): len(e) for root, e in on_chain.items() if len(e) > 1}
    assert not twice, f"roots anchored more than once: {twice}"
    assert set(on_chain) == {bytes(b["root"]) for b in batches}
    for b in batches:
        (event,) = on_chain[bytes(b["root"])]
        assert bytes(event["transactionHash"]) == bytes(b["tx_hash"])
        assert event["blockNumber"] == b["block_number"]


def _check_some_proofs(cluster: Cluster, acked: dict[str, dict[int, int]]) -> None:
    """The API's proof of each device's first and last reading leads to the anchored root."""
    with httpx.Client(base_url=cluster.url, timeout=10) as api:
        for seqs in acked.values():
            for seq in (min(seqs), max(seqs)):
                answer = api.get(f"/v1/readings/{seqs[seq]}/proof", headers=cluster.auth("reader"))
                assert answer.status_code == 200, answer.text
                doc = ProofDocument.from_json(answer.json())
                assert verify_proof(doc.proof, doc.root, doc.leaf)


def _check_leader_metric(cluster: Cluster, *, dead: int, leader: int) -> None:
    text = httpx.get(cluster.url + "/metrics", timeout=10).text
    series = [line for line in text.splitlines() if line.startswith("chainsense_leader{")]
    anchorer = [line for line in series if 'role="anchorer"' in line]
    assert f'pid="{dead}"' not in "\n".join(series), series
    assert [line for line in anchorer if line.endswith(" 1.0")] == [
        f'chainsense_leader{{pid="{leader}",role="anchorer"}} 1.0'
    ], series


def _check_anchoring_status_on_every_worker(cluster: Cluster) -> None:
    """/v1/anchoring says the anchorer runs, whichever worker answers (new connections are
    spread over the workers by the kernel)."""
    answered: set[bool] = set()
    for _ in range(12):
        with httpx.Client(base_url=cluster.url, timeout=10) as fresh:
            answered.add(
                fresh.get("/v1/anchoring", headers=cluster.auth("reader")).json()["running"]
            )
    assert answered == {True}
