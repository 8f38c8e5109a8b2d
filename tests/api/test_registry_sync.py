"""Registry changes made directly on the chain (not through ChainSense) reach ingestion within the
documented bound: ``registry_poll_interval`` plus one RPC round trip."""

from __future__ import annotations

import time

import pytest

from chainsense.identity import DeviceKey
from tests.api.conftest import Api

pytestmark = pytest.mark.chain

SLACK_S = 2.0  # RPC round trip and scheduling on a loaded 2-core machine; not a performance claim


def _on_chain(api: Api, function: str, *args: object) -> None:
    chain = api.platform.chain
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))

    async def send() -> None:
        await chain.operator.transact(getattr(registry.functions, function)(*args))

    assert api.client.portal is not None
    api.client.portal.call(send)


def _refused_within(api: Api, key: DeviceKey, first_seq: int, bound: float) -> tuple[float, dict]:
    start = time.monotonic()
    seq = first_seq
    while True:
        response = api.client.post("/v1/readings", json=api.sign(key, seq))
        elapsed = time.monotonic() - start
        if response.status_code == 403:
            return elapsed, response.json()
        assert response.status_code == 201, response.text
        assert elapsed < bound, f"still accepted {elapsed:.2f} s after the change"
        seq += 1
        time.sleep(0.02)


def test_revocation_on_chain_applies_within_the_poll_interval(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    assert api.client.post("/v1/readings", json=api.sign(key, 1)).status_code == 201
    _on_chain(api, "revoke", key.address)
    bound = api.platform.settings.registry_poll_interval + SLACK_S
    _, problem = _refused_within(api, key, 2, bound)
    assert problem["type"] == "/problems/device-revoked"


def test_key_rotation_on_chain_refuses_the_old_key_and_accepts_the_new(api: Api) -> None:
    old, new = DeviceKey.generate(), DeviceKey.generate()
    api.register(old)
    _on_chain(api, "rotateKey", old.address, new.address)
    bound = api.platform.settings.registry_poll_interval + SLACK_S
    _, problem = _refused_within(api, old, 1, bound)
    assert problem["type"] == "/problems/device-rotated"
    response = api.client.post("/v1/readings", json=api.sign(new, 1))
    assert response.status_code == 201, response.text
    device = api.client.get(f"/v1/devices/{new.address}", headers=api.auth("reader")).json()
    assert device["identity"] == old.address
