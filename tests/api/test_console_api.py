"""What the console needs from the API: newest-first readings, the downsampled series, device
labels, list routes of the settlement records, API keys, and the cookie session with CSRF."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.identity import DeviceKey

from .conftest import Api

pytestmark = pytest.mark.chain

DEV = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _post(api: Api, readings: list[dict[str, Any]]) -> list[int]:
    body = _ok(api.client.post("/v1/readings", json={"readings": readings}))
    assert all(r["status"] == "stored" for r in body["results"]), body
    return [r["id"] for r in body["results"]]


def test_readings_newest_first_with_time_range_and_cursor(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    t0 = int(time.time() * 1000) - 100_000
    ids = _post(api, [api.sign(key, n, timestamp=t0 + n * 1000) for n in range(1, 8)])
    reader = api.auth("reader")
    page = _ok(
        api.client.get(
            "/v1/readings",
            params={"device": key.address, "order": "desc", "limit": 3},
            headers=reader,
        )
    )
    assert [r["id"] for r in page["items"]] == ids[::-1][:3]
    rest = _ok(
        api.client.get(
            "/v1/readings",
            params={"device": key.address, "order": "desc", "cursor": page["next_cursor"]},
            headers=reader,
        )
    )
    assert [r["id"] for r in rest["items"]] == ids[::-1][3:]
    ranged = _ok(
        api.client.get(
            "/v1/readings",
            params={
                "device": key.address,
                "order": "desc",
                "since": t0 + 2000,
                "until": t0 + 5000,
            },
            headers=reader,
        )
    )
    assert [r["seq"] for r in ranged["items"]] == [4, 3, 2]
    assert api.client.get("/v1/readings?order=sideways", headers=reader).status_code == 422


def test_series_buckets_hold_min_max_mean_of_their_readings(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    t0 = int(time.time() * 1000) - 1_000_000
    temps = [400 + (n * 37) % 90 for n in range(40)]  # centi-degrees
    _post(
        api,
        [api.sign(key, n + 1, (t, 600), timestamp=t0 + n * 10_000) for n, t in enumerate(temps)],
    )
    series = _ok(
        api.client.get(
            f"/v1/devices/{key.address}/series",
            params={"metric": "temperature", "since": t0, "until": t0 + 400_000, "points": 4},
            headers=api.auth("reader"),
        )
    )
    assert series["metric"] == "temperature"
    assert series["bucket_ms"] == 100_000
    assert series["schema_name"] == "chainsense.coldchain.v1"
    assert len(series["points"]) == 4
    for k, point in enumerate(series["points"]):
        chunk = temps[k * 10 : (k + 1) * 10]
        assert point["timestamp"] == t0 + k * 100_000
        assert point["count"] == 10
        assert point["min"] == pytest.approx(min(chunk) / 100)
        assert point["max"] == pytest.approx(max(chunk) / 100)
        assert point["avg"] == pytest.approx(sum(chunk) / 1000)
    # the default metric is the schema's first; an unknown one is a 404 naming the choices
    default = _ok(
        api.client.get(
            f"/v1/devices/{key.address}/series",
            params={"since": t0, "until": t0 + 400_000, "points": 1},
            headers=api.auth("reader"),
        )
    )
    assert default["points"][0]["count"] == 40
    missing = api.client.get(
        f"/v1/devices/{key.address}/series?metric=nope", headers=api.auth("reader")
    )
    assert missing.status_code == 404
    assert "temperature" in missing.json()["detail"]
    fresh = DeviceKey.generate()
    api.register(fresh)
    empty = api.client.get(f"/v1/devices/{fresh.address}/series", headers=api.auth("reader"))
    assert empty.status_code == 404
    assert "no readings" in empty.json()["detail"]


def test_device_label_is_set_by_operators(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    url = f"/v1/devices/{key.address.lower()}"
    denied = api.client.patch(url, json={"label": "x"}, headers=api.auth("reader"))
    assert denied.status_code == 403
    body = _ok(api.client.patch(url, json={"label": " Truck 7 "}, headers=api.auth("operator")))
    assert body["label"] == "Truck 7"
    assert _ok(api.client.get(url, headers=api.auth("reader")))["label"] == "Truck 7"
    bad = api.client.patch(url, json={"label": "a\nb"}, headers=api.auth("operator"))
    assert bad.status_code == 422
    cleared = _ok(api.client.patch(url, json={"label": None}, headers=api.auth("operator")))
    assert cleared["label"] is None
    unknown = api.client.patch(
        f"/v1/devices/{DeviceKey.generate().address}",
        json={"label": "x"},
        headers=api.auth("operator"),
    )
    assert unknown.status_code == 404


def test_api_keys_are_listed_created_and_revoked_by_admins(api: Api) -> None:
    admin = api.auth("admin")
    assert api.client.get("/v1/api-keys", headers=api.auth("operator")).status_code == 403
    created = _ok(
        api.client.post("/v1/api-keys", json={"name": "ci", "scope": "reader"}, headers=admin),
        201,
    )
    assert created["key"].startswith(f"cs_{created['prefix']}_")
    listed = _ok(api.client.get("/v1/api-keys", headers=admin))["items"]
    assert any(k["id"] == created["id"] and "key" not in k for k in listed)
    bearer = {"Authorization": f"Bearer {created['key']}"}
    assert api.client.get("/v1/devices", headers=bearer).status_code == 200
    revoked = _ok(api.client.post(f"/v1/api-keys/{created['id']}/revoke", headers=admin))
    assert revoked["revoked_at"] is not None
    assert api.client.get("/v1/devices", headers=bearer).status_code == 401
    again = api.client.post(f"/v1/api-keys/{created['id']}/revoke", headers=admin)
    assert again.status_code == 409
    assert api.client.post("/v1/api-keys/999999/revoke", headers=admin).status_code == 404


def test_console_session_cookie_csrf_and_revocation(api: Api) -> None:
    client = api.client
    created = _ok(
        client.post(
            "/v1/api-keys", json={"name": "browser", "scope": "operator"}, headers=api.auth("admin")
        ),
        201,
    )
    assert client.post("/v1/session", json={"api_key": "cs_nope"}).status_code == 401
    foreign = client.post(
        "/v1/session", json={"api_key": created["key"]}, headers={"Origin": "http://evil.test"}
    )
    assert foreign.status_code == 403
    signed = client.post("/v1/session", json={"api_key": created["key"]})
    body = _ok(signed)
    assert body["scope"] == "operator"
    cookies = signed.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("cs_session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    csrf_cookie = next(c for c in cookies if c.startswith("cs_csrf="))
    assert "HttpOnly" not in csrf_cookie
    try:
        assert _ok(client.get("/v1/session"))["name"] == "browser"
        key = DeviceKey.generate()
        api.register(key)
        url = f"/v1/devices/{key.address}"
        no_token = client.patch(url, json={"label": "a"})
        assert no_token.status_code == 403
        assert "CSRF" in no_token.json()["detail"]
        wrong = client.patch(url, json={"label": "a"}, headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403
        csrf = {"X-CSRF-Token": body["csrf_token"]}
        cross = client.patch(url, json={"label": "a"}, headers=csrf | {"Origin": "http://evil"})
        assert cross.status_code == 403
        assert _ok(client.patch(url, json={"label": "a"}, headers=csrf))["label"] == "a"
        # revoking the key ends the session at once
        _ok(client.post(f"/v1/api-keys/{created['id']}/revoke", headers=api.auth("admin")))
        assert client.get("/v1/session").status_code == 401
        # sign in again with another key, then sign out: the cookie stops working
        signed = client.post("/v1/session", json={"api_key": api.keys["reader"]})
        token = _ok(signed)["csrf_token"]
        assert client.get("/v1/devices").status_code == 200
        assert client.delete("/v1/session").status_code == 403  # no CSRF token
        assert client.delete("/v1/session", headers={"X-CSRF-Token": token}).status_code == 204
        assert client.get("/v1/devices").status_code == 401
    finally:
        client.cookies.clear()


def test_settlement_records_are_listed_newest_first(api: Api) -> None:
    reader, op = api.auth("reader"), api.auth("operator")
    assert _ok(api.client.get("/v1/charging/sessions", headers=reader))["items"] == []
    assert _ok(api.client.get("/v1/market/orders", headers=reader))["items"] == []
    assert _ok(api.client.get("/v1/shipments", headers=reader)) == {
        "items": [],
        "next_cursor": None,
    }
    logger = DeviceKey.generate()
    api.register(logger)
    now_ms = int(time.time() * 1000)
    opened = []
    for _ in range(3):
        body = {
            "account": 5,
            "carrier": DEV[6],
            "loggers": [logger.address],
            "min_value": 200,
            "max_value": 800,
            "window_start_ms": now_ms - 60_000,
            "window_end_ms": now_ms + 60_000,
            "payment": 1_000_000,
            "penalty_per_breach": 100_000,
            "max_penalty": 200_000,
        }
        opened.append(_ok(api.client.post("/v1/shipments", json=body, headers=op), 201)["id"])
    page = _ok(api.client.get("/v1/shipments?limit=2", headers=reader))
    assert [s["id"] for s in page["items"]] == opened[::-1][:2]
    assert page["items"][0]["status"] == "open"
    rest = _ok(api.client.get(f"/v1/shipments?cursor={page['next_cursor']}", headers=reader))
    assert [s["id"] for s in rest["items"]] == opened[::-1][2:]
    assert rest["next_cursor"] is None
