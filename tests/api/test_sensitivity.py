"""/v1/devices/{address}/sensitivity: a device's expected false alarms a week, set by an
operator, read by a reader, applied to the device's detector, saved so that a restarted worker
has it, and dropped again with null."""

from __future__ import annotations

from typing import Any

import pytest

from chainsense.ai.service import AIService
from chainsense.identity import DeviceKey
from tests.api.conftest import Api

pytestmark = pytest.mark.chain

COLD = "chainsense.coldchain.v1"


def test_sensitivity_is_set_read_applied_saved_and_dropped(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    path = f"/v1/devices/{key.address.lower()}/sensitivity"
    reader, operator = api.auth("reader"), api.auth("operator")

    first = api.client.get(path, headers=reader)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "device": key.address,
        "false_alarms_per_week": None,
        "default_false_alarms_per_week": 1.0,
    }
    body = {"false_alarms_per_week": 0.1}
    assert api.client.put(path, json=body, headers=reader).status_code == 403
    for bad in (0, -1, "often"):
        refused = api.client.put(path, json={"false_alarms_per_week": bad}, headers=operator)
        assert refused.status_code == 422, refused.text
    assert api.client.put(path, json={}, headers=operator).status_code == 422

    put = api.client.put(path, json=body, headers=operator)
    assert put.status_code == 200, put.text
    assert put.json()["false_alarms_per_week"] == 0.1
    assert api.client.get(path, headers=reader).json()["false_alarms_per_week"] == 0.1

    ai = api.platform.ai
    assert ai is not None
    assert ai.monitor.per_week(key.address, COLD) == 0.1
    assert ai.monitor.per_week(DeviceKey.generate().address, COLD) == 1.0

    # a worker started afresh on the same store has it
    async def restarted() -> float:
        fresh = AIService(store=api.platform.store, schemas=ai.schemas, config=ai.config)
        await fresh.start()
        await fresh.stop()
        return fresh.monitor.per_week(key.address, COLD)

    assert api.client.portal is not None
    assert api.client.portal.call(restarted) == 0.1

    dropped = api.client.put(path, json={"false_alarms_per_week": None}, headers=operator)
    assert dropped.json()["false_alarms_per_week"] is None
    assert ai.monitor.per_week(key.address, COLD) == 1.0
    assert api.client.portal.call(restarted) == 1.0


def test_a_device_is_recommissioned_by_an_operator(api: Api) -> None:
    """POST /v1/devices/{address}/recommission: operator only; saved; the answer names the
    alarms it cleared (none here). What the worker forgets is in tests/ai/test_engine_process.py."""
    key = DeviceKey.generate()
    api.register(key)
    path = f"/v1/devices/{key.address.lower()}/recommission"
    assert api.client.post(path, headers=api.auth("reader")).status_code == 403
    done = api.client.post(path, headers=api.auth("operator"))
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["device"], body["alarms_cleared"]) == (key.address, [])
    assert body["recommissioned_at"] > 0

    async def saved() -> list[dict[str, Any]]:
        states = await api.platform.store.anomalies.states(device=key.address, model="recommission")
        return list(states.values())

    assert api.client.portal is not None
    assert api.client.portal.call(saved) == [{"at_ms": body["recommissioned_at"]}]
