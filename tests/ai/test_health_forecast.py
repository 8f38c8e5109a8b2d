"""The machine demo shows a health estimate, the meter demo a forecast (real server, real chain)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainsense.identity import DeviceKey
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.api.conftest import Api, make_api

pytestmark = [pytest.mark.chain]

MACHINE = BUILTIN_SCHEMAS.by_name("chainsense.machine.v1")
METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("ai-api")
    yield from make_api(data_dir)


def _wait(api: Api, path: str) -> dict[str, Any]:
    for _ in range(300):
        response = api.client.get(path, headers=api.auth("reader"))
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 404, response.text
        time.sleep(0.1)
    raise AssertionError(f"{path} never answered")


def test_machine_health_estimates_remaining_life_from_a_rising_vibration(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    now = int(time.time() * 1000)
    hours = 48
    readings = [
        api.sign(
            key,
            h + 1,
            (2000 + 50 * h + (10 if h % 2 else -10), 4500, 12000),  # +0.05 m/s2 per hour
            timestamp=now - (hours - h) * 3_600_000,
            schema=MACHINE.id,
        )
        for h in range(hours)
    ]
    assert api.client.post("/v1/readings", json={"readings": readings}).is_success
    health = _wait(api, f"/v1/devices/{key.address}/health")
    vibration = next(m for m in health["metrics"] if m["metric"] == "vibration_rms")
    # from ~4.35 m/s2 now, rising 0.05 per hour, to the 7.1 limit: ~55 hours
    assert vibration["slope_per_hour"] == pytest.approx(0.05, rel=0.05)
    assert 45 < vibration["remaining_hours"] < 65
    assert vibration["remaining_hours_low"] < vibration["remaining_hours"]
    assert vibration["remaining_hours"] < vibration["remaining_hours_high"]
    flat = next(m for m in health["metrics"] if m["metric"] == "temperature")
    assert flat["remaining_hours"] is None  # not rising towards its limit


def test_meter_forecast_follows_the_daily_pattern(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    now = int(time.time() * 1000)
    quarter = 900_000
    first = now - now % quarter - 2 * 96 * quarter
    readings = []
    for i in range(2 * 96):
        t = first + i * quarter
        evening = 18 <= (t % 86_400_000) // 3_600_000 < 21
        readings.append(
            api.sign(key, i + 1, (400 if evening else 100, 0), timestamp=t, schema=METER.id)
        )
    for chunk in (readings[:96], readings[96:]):
        assert api.client.post("/v1/readings", json={"readings": chunk}).is_success
    start = first + 2 * 96 * quarter
    forecast = _wait(api, f"/v1/devices/{key.address}/forecast?start={start}&intervals=96")
    imported = forecast["metrics"]["energy_imported"]
    assert len(imported) == 96
    by_hour = {(p["timestamp"] % 86_400_000) // 3_600_000: p["value"] for p in imported}
    assert by_hour[19] == 400
    assert by_hour[3] == 100
    assert forecast["interval_ms"] == quarter
