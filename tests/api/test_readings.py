"""POST /v1/readings end to end: signature, registry, seq, durability; and every bad input gets a
clear 4xx that names the problem and stores nothing."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from chainsense.identity import DeviceKey
from tests.api.conftest import COLD, Api

JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.chain


@pytest.fixture
def device(api: Api) -> DeviceKey:
    key = DeviceKey.generate()
    api.register(key)
    return key


def _post(api: Api, body: object) -> tuple[int, dict[str, object]]:
    response = api.client.post("/v1/readings", json=body)
    return response.status_code, response.json()


def test_stored_then_queryable_with_everything_needed_to_reverify(
    api: Api, device: DeviceKey
) -> None:
    reading = api.sign(device, 1, (-1850, 955))
    status, body = _post(api, reading)
    assert status == 201, body
    assert body["status"] == "stored"
    stored = api.client.get(f"/v1/readings/{body['id']}", headers=api.auth("reader")).json()
    assert stored["device"] == device.address
    assert stored["values"] == [-1850, 955]
    assert stored["signature"] == reading["signature"]
    assert stored["schema"] == reading["schema"]
    assert stored["schema_name"] == "chainsense.coldchain.v1"
    assert stored["timestamp"] == reading["timestamp"]


def test_identical_replay_gets_the_same_answer_and_no_duplicate(
    api: Api, device: DeviceKey
) -> None:
    reading = api.sign(device, 1)
    _, first = _post(api, reading)
    before = api.count()
    status, again = _post(api, reading)
    assert status == 200
    assert again["status"] == "duplicate"
    assert again["id"] == first["id"]
    assert api.count() == before


def test_different_reading_with_a_used_seq_is_409(api: Api, device: DeviceKey) -> None:
    _post(api, api.sign(device, 5))
    before = api.count()
    status, body = _post(api, api.sign(device, 5, (1, 2)))
    assert status == 409
    assert body["type"] == "/problems/seq-conflict"
    assert body["field"] == "seq"
    status, body = _post(api, api.sign(device, 4))
    assert status == 409
    assert body["type"] == "/problems/seq-not-increasing"
    assert api.count() == before


def test_senml_form_reaches_the_same_signed_bytes(api: Api, device: DeviceKey) -> None:
    raw = api.sign(device, 1, (415, 620))
    senml = {
        "device": raw["device"],
        "seq": raw["seq"],
        "timestamp": raw["timestamp"],
        "schema": "chainsense.coldchain.v1",
        "senml": [
            {"n": "humidity", "u": "%RH", "v": 62.0},
            {"n": "temperature", "u": "Cel", "v": 4.15},
        ],
        "signature": raw["signature"],
    }
    status, body = _post(api, senml)
    assert status == 201, body
    stored = api.client.get(f"/v1/readings/{body['id']}", headers=api.auth("reader")).json()
    assert stored["values"] == [415, 620]
    status, again = _post(api, raw)  # the raw form of the same reading is an identical replay
    assert status == 200
    assert again["id"] == body["id"]


def test_batch_gives_each_reading_its_own_status(api: Api, device: DeviceKey) -> None:
    good1 = api.sign(device, 1)
    bad_sig = api.sign(device, 2) | {"values": [999, 999]}
    good2 = api.sign(device, 3)
    unknown_schema = api.sign(device, 4, schema=b"\x01" * 32)
    before = api.count()
    status, body = _post(api, {"readings": [good1, bad_sig, good2, unknown_schema]})
    assert status == 200
    results = body["results"]
    assert [r["status"] for r in results] == ["stored", "rejected", "stored", "rejected"]
    assert results[1]["error"]["status"] == 401
    assert results[3]["error"]["field"] == "schema"
    assert (body["stored"], body["rejected"]) == (2, 2)
    assert api.count() == before + 2


def _bad(api: Api, body: object, status: int, field: str | None, code: str) -> None:
    before = api.count()
    response = api.client.post("/v1/readings", content=json.dumps(body), headers=JSON)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"/problems/{code}", problem
    if field is not None:
        assert problem["field"] == field, problem
    assert problem["detail"]
    assert api.count() == before


def test_malformed_json_is_400(api: Api) -> None:
    before = api.count()
    response = api.client.post("/v1/readings", content=b'{"device": "0x12", ', headers=JSON)
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/malformed-json"
    assert api.count() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": "seven"}, "seq"),
        ({"seq": 1.5}, "seq"),
        ({"timestamp": None}, "timestamp"),
        ({"values": "415,620"}, "values"),
        ({"values": [415, "x"]}, "values[1]"),
        ({"device": "0x1234"}, "device"),
        ({"schema": "coldchain"}, "schema"),
    ],
)
def test_wrong_types_name_the_field(
    api: Api, device: DeviceKey, change: dict[str, object], field: str
) -> None:
    _bad(api, api.sign(device, 1) | change, 422, field, "invalid-reading")


def test_missing_field_is_named(api: Api, device: DeviceKey) -> None:
    reading = api.sign(device, 1)
    del reading["timestamp"]
    _bad(api, reading, 422, "timestamp", "invalid-reading")


def test_unknown_schema(api: Api, device: DeviceKey) -> None:
    _bad(api, api.sign(device, 1, schema=b"\x07" * 32), 422, "schema", "unknown-schema")


def test_values_outside_int64(api: Api, device: DeviceKey) -> None:
    reading = api.sign(device, 1) | {"values": [2**63, 1]}
    _bad(api, reading, 422, "values[0]", "invalid-reading")


def test_wrong_number_of_values(api: Api, device: DeviceKey) -> None:
    _bad(api, api.sign(device, 1, (1, 2, 3)), 422, "values", "invalid-reading")


def test_bad_signature(api: Api, device: DeviceKey) -> None:
    reading = api.sign(device, 1)
    _bad(api, reading | {"signature": "0x1234"}, 422, "signature", "invalid-signature")
    forged = api.sign(DeviceKey.generate(), 1) | {"device": device.address}
    _bad(api, forged, 401, "signature", "signature-mismatch")


def test_signature_for_another_chain_or_contract(api: Api, device: DeviceKey) -> None:
    _bad(api, api.sign(device, 1, chain_id=1), 401, "signature", "signature-mismatch")
    other = "0x000000000000000000000000000000000000bEEF"
    _bad(api, api.sign(device, 1, contract=other), 401, "signature", "signature-mismatch")


def test_unknown_device(api: Api) -> None:
    _bad(api, api.sign(DeviceKey.generate(), 1), 403, "device", "unknown-device")


def test_revoked_device_is_refused_and_its_old_readings_stay(api: Api, device: DeviceKey) -> None:
    status, first = _post(api, api.sign(device, 1))
    assert status == 201
    revoked = api.client.post(f"/v1/devices/{device.address}/revoke", headers=api.auth("operator"))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    _bad(api, api.sign(device, 2), 403, "device", "device-revoked")
    old = api.client.get(f"/v1/readings/{first['id']}", headers=api.auth("reader"))
    assert old.status_code == 200


def test_timestamp_too_far_in_the_future(api: Api, device: DeviceKey) -> None:
    future = int(time.time() * 1000) + 3_600_000
    _bad(api, api.sign(device, 1, timestamp=future), 422, "timestamp", "timestamp-in-future")


def test_seq_zero_and_seq_beyond_storage(api: Api, device: DeviceKey) -> None:
    _bad(api, api.sign(device, 0), 422, "seq", "invalid-reading")
    _bad(api, api.sign(device, 2**63), 422, "seq", "invalid-reading")


def test_oversized_batch_and_body(api: Api, device: DeviceKey) -> None:
    limit = api.platform.settings.max_batch
    reading = api.sign(device, 1)
    _bad(api, {"readings": [reading] * (limit + 1)}, 413, "readings", "batch-too-large")
    before = api.count()
    huge = b'{"readings": [' + b" " * api.platform.settings.max_body_bytes + b"]}"
    response = api.client.post("/v1/readings", content=huge, headers=JSON)
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/body-too-large"
    assert api.count() == before


def test_senml_with_too_many_decimals_or_wrong_unit(api: Api, device: DeviceKey) -> None:
    raw = api.sign(device, 1)
    base = {k: raw[k] for k in ("device", "seq", "timestamp", "signature")}
    base["schema"] = "chainsense.coldchain.v1"
    too_precise = base | {"senml": [{"n": "temperature", "v": 4.155}, {"n": "humidity", "v": 62}]}
    _bad(api, too_precise, 422, "senml[0].v", "invalid-reading")
    wrong_unit = base | {
        "senml": [{"n": "temperature", "u": "K", "v": 4.15}, {"n": "humidity", "v": 62}]
    }
    _bad(api, wrong_unit, 422, "senml[0].u", "invalid-reading")
    assert COLD.to_fixed("temperature", Decimal("4.15")) == 415


def test_query_by_device_and_time_with_cursor_pagination(api: Api, device: DeviceKey) -> None:
    start = int(time.time() * 1000) - 10_000
    batch = [api.sign(device, i, timestamp=start + i) for i in range(1, 8)]
    assert _post(api, {"readings": batch})[0] == 200
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"device": device.address, "since": start + 2, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/v1/readings", params=params, headers=api.auth("reader")).json()
        seen += [int(r["seq"]) for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [2, 3, 4, 5, 6, 7]


def test_api_keys_are_required_and_scoped(api: Api, device: DeviceKey) -> None:
    assert api.client.get("/v1/readings").status_code == 401
    bad = api.client.get("/v1/readings", headers={"Authorization": "Bearer cs_nope_nope"})
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    under = api.client.post(
        "/v1/devices", json={"address": DeviceKey.generate().address}, headers=api.auth("reader")
    )
    assert under.status_code == 403
    assert "operator" in under.json()["detail"]
    ok = api.client.get("/v1/readings", headers={"X-API-Key": api.keys["reader"]})
    assert ok.status_code == 200
