"""Rate limits and overload shedding against real ``chainsense serve`` processes, with real
concurrent clients (threads, one HTTP connection each). No timing is asserted: only who got
served, who got 429/503, and that every refusal says when to retry.

- one process, limits in memory: a flood from one API key gets 429 while another key's traffic
  is all served; the same for one device's readings (counted after the signature verified)
  while another device's readings are all stored;
- two processes sharing Redis: one address limit across both;
- shedding: with 2 requests in flight at most and no queue, a flood gets 503 + Retry-After
  while /healthz keeps answering 200.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chainsense.identity import DeviceKey
from tests.e2e._serve import Serve, Stats, flood, signed_readings
from tests.limits.test_limiters import ensure_redis

pytestmark = [pytest.mark.chain, pytest.mark.slow]

KEY_LIMIT = {"rate_limit_key_rate": "5", "rate_limit_key_burst": "10"}
DEVICE_LIMIT = {"rate_limit_device_rate": "2", "rate_limit_device_burst": "5"}
OPEN_ADDRESS = {"rate_limit_address_rate": "10000", "rate_limit_address_burst": "10000"}
REDIS_DB = 11  # a database of the shared Redis that nothing else here uses
SHARED_ADDRESS = {"rate_limit_address_rate": "1", "rate_limit_address_burst": "20"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Four servers, started at once (each starts its own Anvil and deploys)."""
    import redis

    ensure_redis()
    redis.Redis(port=6379, db=REDIS_DB).flushdb()
    base = tmp_path_factory.mktemp("limits")
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    made = {
        "memory": Serve(base / "memory", **KEY_LIMIT, **DEVICE_LIMIT, **OPEN_ADDRESS),
        "redis-1": Serve(base / "redis1", redis_url=redis_url, **SHARED_ADDRESS),
        "redis-2": Serve(base / "redis2", redis_url=redis_url, **SHARED_ADDRESS),
        "shed": Serve(
            base / "shed",
            rate_limit_enabled="false",
            shed_max_in_flight="2",
            shed_max_queue="0",
            shed_retry_after="2",
        ),
    }
    made["memory"].create_keys("flood", "other", "ops")
    made["shed"].create_keys("flood")
    try:
        for serve in made.values():
            serve.start()
        for serve in made.values():
            serve.wait_ready()
        yield made
    finally:
        for serve in made.values():
            serve.stop()


def _get(url: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return lambda http: http.get(url, headers=headers)


def test_a_flooding_key_gets_429_while_another_key_is_served(servers: dict[str, Any]) -> None:
    serve: Serve = servers["memory"]
    url = serve.url + "/v1/schemas"
    flooder, other = Stats(), Stats()
    flood(
        [
            (flooder, 8, 0.0, _get(url, serve.keys["flood"])),
            (other, 1, 0.3, _get(url, serve.keys["other"])),  # ~3/s: under the 5/s limit
        ],
        seconds=4,
    )
    print("\nflooding key:", flooder.summary(), "\nother key:   ", other.summary())
    assert flooder.count(429) > 0
    assert flooder.ok >= 10  # at least the burst was served
    assert flooder.missing_retry_after == 0
    assert other.sent > 0
    assert other.ok == other.sent  # every request of the other key was served


class _Readings:
    """One device's signed readings in seq order, handed to many threads."""

    def __init__(self, key: DeviceKey, domain: tuple[int, str], count: int) -> None:
        self._items = signed_readings(key, domain, count)
        self._lock = threading.Lock()

    def post(self, url: str) -> Any:
        def send(http: httpx.Client) -> httpx.Response:
            with self._lock:
                body = next(self._items)
            return http.post(url, json=body)

        return send


def test_a_flooding_device_gets_429_while_another_device_is_stored(
    servers: dict[str, Any],
) -> None:
    serve: Serve = servers["memory"]
    domain = serve.domain()
    loud, quiet = DeviceKey.generate(), DeviceKey.generate()
    for key in (loud, quiet):
        serve.register(key, serve.keys["ops"])
    url = serve.url + "/v1/readings"
    flooder, other = Stats(), Stats()
    flood(
        [
            (flooder, 6, 0.0, _Readings(loud, domain, 5000).post(url)),
            (other, 1, 1.0, _Readings(quiet, domain, 100).post(url)),  # 1/s: under 2/s
        ],
        seconds=4,
    )
    print("\nflooding device:", flooder.summary(), "\nother device:   ", other.summary())
    assert flooder.count(429) > 0
    assert flooder.count(201) >= 5
    assert flooder.missing_retry_after == 0
    assert other.sent > 0
    assert other.count(201) == other.sent


def test_a_stranger_cannot_spend_a_devices_quota(servers: dict[str, Any]) -> None:
    """Readings that claim a device but are not signed by it are refused (401) and never
    counted against the device: its own readings still get through."""
    serve: Serve = servers["memory"]
    domain = serve.domain()
    victim, stranger = DeviceKey.generate(), DeviceKey.generate()
    serve.register(victim, serve.keys["ops"])
    forged = list(signed_readings(stranger, domain, 30))
    with httpx.Client(base_url=serve.url, timeout=30) as http:
        statuses = [
            http.post("/v1/readings", json=r | {"device": victim.address}).status_code
            for r in forged
        ]
        own = [http.post("/v1/readings", json=r) for r in signed_readings(victim, domain, 5)]
    assert set(statuses) == {401}
    assert [r.status_code for r in own] == [201] * 5


def test_two_processes_sharing_redis_enforce_one_limit(servers: dict[str, Any]) -> None:
    one: Serve = servers["redis-1"]
    two: Serve = servers["redis-2"]
    first, second = Stats(), Stats()
    elapsed = flood(
        [
            (first, 2, 0.0, _get(one.url + "/v1/schemas")),
            (second, 2, 0.0, _get(two.url + "/v1/schemas")),
        ],
        seconds=3,
    )
    served = first.ok + second.ok
    print(f"\nserver 1: {first.summary()}\nserver 2: {second.summary()}\nserved {served}")
    # One shared bucket of 20 refilling at 1/s; two separate ones would serve at least 40.
    assert served <= 20 + elapsed * 1 + 2
    assert first.count(429) > 0
    assert second.count(429) > 0
    assert first.ok > 0
    assert second.ok > 0


def test_saturation_is_shed_with_503_while_healthz_answers(servers: dict[str, Any]) -> None:
    serve: Serve = servers["shed"]
    load, probes = Stats(), Stats()
    flood(
        [
            (load, 16, 0.0, _get(serve.url + "/v1/readings?limit=200", serve.keys["flood"])),
            (probes, 1, 0.05, _get(serve.url + "/healthz")),
        ],
        seconds=4,
    )
    print("\nload:  ", load.summary(), "\nprobes:", probes.summary())
    assert load.count(503) > 0
    assert load.ok > 0
    assert load.missing_retry_after == 0
    assert probes.sent > 0
    assert probes.ok == probes.sent
