"""A device registered on the chain by someone else (another ``serve`` worker, the owner's own
transaction) is known the moment its first reading arrives, not only after the next registry
poll: a reading refused as ``unknown-device`` makes the platform apply the registry's newest
events first (once per 0.25 s at most, shared by concurrent requests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chainsense.identity import DeviceKey
from tests.api.conftest import Api, make_api
from tests.api.test_registry_sync import _on_chain

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # the poll would otherwise find the registration within 0.25 s and hide what is tested
    yield from make_api(tmp_path_factory.mktemp("catch-up"), registry_poll_interval=3600)


def test_a_device_registered_elsewhere_is_accepted_at_its_first_reading(api: Api) -> None:
    key = DeviceKey.generate()
    operator = api.platform.chain.operator.address
    _on_chain(api, "register", key.address, operator, b"\x00" * 32)
    response = api.client.post("/v1/readings", json=api.sign(key, 1))
    assert response.status_code == 201, response.text
    device = api.client.get(f"/v1/devices/{key.address}", headers=api.auth("reader"))
    assert device.json()["status"] == "active"


def test_a_key_nobody_registered_is_still_refused(api: Api) -> None:
    key = DeviceKey.generate()
    response = api.client.post("/v1/readings", json=api.sign(key, 1))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/problems/unknown-device")


def test_a_batch_keeps_its_order_when_some_devices_are_caught_up(api: Api) -> None:
    known, late = DeviceKey.generate(), DeviceKey.generate()
    api.register(known)
    operator = api.platform.chain.operator.address
    _on_chain(api, "register", late.address, operator, b"\x00" * 32)
    items = [api.sign(late, 1), api.sign(known, 1), api.sign(late, 2), api.sign(known, 2)]
    response = api.client.post("/v1/readings", json={"readings": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["index"], r["status"], r["seq"]) for r in results] == [
        (0, "stored", 1), (1, "stored", 1), (2, "stored", 2), (3, "stored", 2)
    ]  # fmt: skip
    ids = [r["id"] for r in results]
    assert ids[0] < ids[2]
    assert ids[1] < ids[3]
