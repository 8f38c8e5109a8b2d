"""Many devices registered at once through ``serve --workers 2``.

Every worker sends registrations with the operator key. Each worker's signer kept its own next
nonce, so two workers sending at once took the same nonce, and the loser was only retried a few
times: registering 1,300 devices 8 at a time through 2 workers (``bench/load.py --scenarios
swarm`` on PostgreSQL) stopped at a 409 ``nonce too low``. The workers now take turns through a
lock file in the data dir (``Signer.host_lock``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from chainsense.identity import DeviceKey
from tests.provenance.test_crash_leader import Cluster, cluster_on_a_new_database

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]

DEVICES = 48
CLIENTS = 8


@pytest.mark.timeout(300)
def test_concurrent_registrations_through_two_workers_all_succeed(tmp_path: Path) -> None:
    with cluster_on_a_new_database(tmp_path, "chainsense_test_workers_register") as cluster:
        _register_many_and_check(cluster)


def _register_many_and_check(cluster: Cluster) -> None:
    cluster.env["CHAINSENSE_LOG_LEVEL"] = "DEBUG"  # a send retried after a collision says so
    cluster.start()
    addresses = [DeviceKey.generate().address for _ in range(DEVICES)]
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
    log = cluster.log.read_text()
    # not even a collision that a retry saved (without the lock file: 39 in a run of this test)
    assert "nonce taken by another sender" not in log
    # and, while a cluster runs: each worker's shedder found the socket the workers share
    # (their settings name another port than `serve --port`; they looked for that one before)
    assert log.count(f"watching the accept queue of port {cluster.port}, shared by 2") == 2, log
