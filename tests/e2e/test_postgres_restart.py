"""PostgreSQL restarted under load, against a real ``chainsense serve`` on a PostgreSQL cluster of
the test's own (so the shared server is never touched): devices keep posting readings from 8
threads while the cluster stops and starts. Every refusal is 503 with Retry-After (the issue saw
518 answers of 500), ingestion resumes, and every acknowledged reading is stored."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chainsense.identity import DeviceKey
from chainsense.store import Store
from tests.e2e._serve import Serve, Stats, flood, signed_readings
from tests.store.test_faults import PrivatePostgres

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, PrivatePostgres]]:
    server = PrivatePostgres()
    try:
        server.ctl("start")
        serve = Serve(
            tmp_path_factory.mktemp("pg-restart") / "data",
            database_url=server.url,
            rate_limit_enabled="false",
        )

        async def key() -> str:
            store = await Store.open(server.url)
            try:
                return (await store.api_keys.create(name="ops", scope="admin"))[1]
            finally:
                await store.close()

        serve.keys["ops"] = asyncio.run(key())
        serve.start()
        try:
            serve.wait_ready()
            yield serve, server
        finally:
            serve.stop()
    finally:
        server.remove()


class _Device:
    """One device's readings, one at a time, remembering which were acknowledged."""

    def __init__(self, key: DeviceKey, domain: tuple[int, str]) -> None:
        self.key = key
        self._items = signed_readings(key, domain, 100_000)
        self._lock = threading.Lock()
        self.acknowledged: set[int] = set()
        self.other: list[str] = []

    def send(self, http: httpx.Client, url: str) -> httpx.Response:
        with self._lock:  # seq order per device: one request in flight per device
            body = next(self._items)
            answer = http.post(url, json=body)
            if answer.status_code in (200, 201):
                self.acknowledged.add(body["seq"])
            elif answer.status_code != 503:
                self.other.append(answer.text)
            return answer


def test_a_postgresql_restart_under_load_is_503_never_500(
    setup: tuple[Serve, PrivatePostgres],
) -> None:
    serve, server = setup
    domain = serve.domain()
    devices = [_Device(DeviceKey.generate(), domain) for _ in range(8)]
    for device in devices:
        # each worker's signer caches the operator key's nonce; a taken one is sent again, so
        # the first answer is 201 whichever worker takes it
        serve.register(device.key, serve.keys["ops"])
    # every worker's registry view polls the chain each second: let all of them see the devices
    time.sleep(3.0)
    url = serve.url + "/v1/readings"
    stats = Stats()

    def restart() -> None:
        time.sleep(2.0)
        server.ctl("stop")
        time.sleep(1.0)
        server.ctl("start")

    def client(device: _Device) -> Any:
        return lambda http: device.send(http, url)

    bouncer = threading.Thread(target=restart)
    bouncer.start()
    flood([(stats, 1, 0.0, client(d)) for d in devices], seconds=10)
    bouncer.join()
    print("\nPostgreSQL restart under load:", stats.summary())
    assert set(stats.statuses) <= {201, 503}, [stats.statuses, *(d.other[:2] for d in devices)]
    assert stats.count(503) > 0, "the restart was not seen"
    assert stats.missing_retry_after == 0
    # ingestion resumes, and every acknowledged reading is stored
    with httpx.Client(timeout=30) as http:
        for device in devices:
            assert device.send(http, url).status_code == 201
    headers = {"Authorization": f"Bearer {serve.keys['ops']}"}
    for device in devices:
        stored: set[int] = set()
        cursor = None
        address = device.key.address
        while True:
            page = httpx.get(
                url,
                params={"device": address, "limit": 1000} | ({"cursor": cursor} if cursor else {}),
                headers=headers,
                timeout=30,
            ).json()
            stored.update(r["seq"] for r in page["items"])
            if not (cursor := page["next_cursor"]):
                break
        assert device.acknowledged <= stored
