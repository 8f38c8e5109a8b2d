"""What any worker of ``serve --workers 2`` answers (PostgreSQL, real Anvil).

- Many devices registered at once. Every worker sends registrations with the operator key. Each
  worker's signer kept its own next nonce, so two workers sending at once took the same nonce,
  and the loser was only retried a few times: registering 1,300 devices 8 at a time through 2
  workers (``bench/load.py --scenarios swarm`` on PostgreSQL) stopped at a 409 ``nonce too
  low``. The workers now take turns through a lock file in the data dir (``Signer.host_lock``).
- ``/v1/ai/status`` from either worker. Only the AI role's leader runs the worker; a follower
  answered with its own never-started one (``running`` false, every stored reading counted as
  not analysed: the load bench printed an "AI lag" of all the readings it had sent). A follower
  now gives the worker's progress as the database records it.
- Each worker's shedder watches the accept queue of the socket the workers share.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainsense.identity import DeviceKey
from chainsense.identity.reading import Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.e2e._serve import signed_readings
from tests.provenance.test_crash_leader import Cluster, cluster_on_a_new_database

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]

DEVICES = 48
COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
CLIENTS = 8


@pytest.mark.timeout(300)
def test_registrations_and_ai_status_through_either_worker(tmp_path: Path) -> None:
    with cluster_on_a_new_database(tmp_path, "chainsense_test_workers_api") as cluster:
        cluster.env["CHAINSENSE_LOG_LEVEL"] = "DEBUG"  # a send retried after a collision says so
        cluster.env["CHAINSENSE_AI_ENABLED"] = "true"
        cluster.start()
        keys = _register_many_at_once(cluster)
        _ai_status_from_either_worker(cluster, keys[:8])
        _live_events_on_either_worker(cluster, keys[8])
        log = cluster.log.read_text()
        # not even a collision that a retry saved (without the lock file: 39 in a run of this)
        assert "nonce taken by another sender" not in log
        # each worker's shedder found the socket the workers share (their settings name
        # another port than `serve --port`: they looked for that one before)
        assert log.count(f"watching the accept queue of port {cluster.port}, shared by 2") == 2


def _register_many_at_once(cluster: Cluster) -> list[DeviceKey]:
    keys = [DeviceKey.generate() for _ in range(DEVICES)]
    addresses = [k.address for k in keys]
    answers: dict[str, tuple[int, str]] = {}

    async def register() -> None:
        todo = list(addresses)

        async def client() -> None:
            # one connection per client: the kernel spreads them over both workers
            async with httpx.AsyncClient(base_url=cluster.url, timeout=60) as http:
                while todo:
                    address = todo.pop()
                    r = await http.post(
                        "/v1/devices", json={"address": address}, headers=cluster.auth("operator")
                    )
                    answers[address] = (r.status_code, r.text)

        await asyncio.gather(*(client() for _ in range(CLIENTS)))

    asyncio.run(register())
    refused = {a: answer for a, answer in answers.items() if answer[0] != 201}
    assert not refused, refused
    listed = httpx.get(
        cluster.url + "/v1/devices",
        params={"limit": 500},
        headers=cluster.auth("reader"),
        timeout=30,
    ).json()
    items = listed["items"] if isinstance(listed, dict) else listed
    active = {d["address"].lower() for d in items if d["status"] == "active"}
    assert {a.lower() for a in addresses} <= active
    return keys


def _ai_status_from_either_worker(cluster: Cluster, keys: list[DeviceKey]) -> None:
    chain = httpx.get(cluster.url + "/v1/chain", timeout=30).json()
    domain = (chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"])
    for key in keys:
        body = {"readings": list(signed_readings(key, domain, 5))}
        answer = httpx.post(cluster.url + "/v1/readings", json=body, timeout=60)
        assert answer.json()["stored"] == 5, answer.text
    deadline = time.monotonic() + 120
    seen: list[dict[str, Any]] = []
    while True:
        # a new connection each time: the kernel hands them to either worker
        seen = [
            httpx.get(cluster.url + "/v1/ai/status", headers=cluster.auth("reader"), timeout=30)
            .raise_for_status()
            .json()
            for _ in range(12)
        ]
        caught_up = all(s["lag_readings"] == 0 and s["running"] for s in seen)
        both = {s["worker_here"] for s in seen} == {True, False}
        if caught_up and both:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(1)
    assert {s["cursor"] for s in seen} == {s["newest_reading_id"] for s in seen}
    assert min(s["newest_reading_id"] for s in seen) >= len(keys) * 5


def _live_events_on_either_worker(cluster: Cluster, key: DeviceKey) -> None:
    """A live stream (``GET /v1/stream``, the console's) held by either worker gets the anomaly
    the AI worker raises in the leader; before, only streams held by the leader did."""
    listeners: list[tuple[bool, threading.Event, list[str]]] = []
    threads = []
    deadline = time.monotonic() + 60
    while {here for here, _, _ in listeners} != {True, False}:
        assert time.monotonic() < deadline, "every stream landed on the same worker"
        here_box: list[bool] = []
        ready, got = threading.Event(), []
        thread = threading.Thread(target=_listen, args=(cluster, here_box, ready, got), daemon=True)
        thread.start()
        assert ready.wait(30), "the stream did not open"
        listeners.append((here_box[0], ready, got))
        threads.append(thread)
    chain = httpx.get(cluster.url + "/v1/chain", timeout=30).json()
    domain = (chain["chain_id"], chain["contracts"]["DeviceRegistry"]["address"])
    # 12.50 Cel: past the cold-chain range, a hard limit: an event at once
    reading = Reading(key.address, 1, int(time.time() * 1000), COLD.id, (1250, 620))
    body = reading.to_json() | {"signature": "0x" + key.sign(reading, *domain).hex()}
    assert httpx.post(cluster.url + "/v1/readings", json=body, timeout=60).status_code == 201
    for thread in threads:
        thread.join(60)
    for here, _, got in listeners:
        assert got, f"a stream held by the {'leader' if here else 'follower'} got nothing"
        event = json.loads(got[0])
        assert (event["device"], event["check"]) == (key.address, "limit")


def _listen(cluster: Cluster, here: list[bool], ready: threading.Event, got: list[str]) -> None:
    # one connection: the status answer says which worker holds the stream that follows on it
    with httpx.Client(
        base_url=cluster.url, headers=cluster.auth("reader"), timeout=90,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    ) as client:  # fmt: skip
        here.append(client.get("/v1/ai/status").raise_for_status().json()["worker_here"])
        with client.stream("GET", "/v1/stream") as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                elif line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event == "anomaly":
                    got.append(line[len("data: ") :])
                    return
