"""A shipment's allowed range as a hard limit on its loggers' readings, during its window only,
narrower than the cold-chain schema's 2-8 Cel; saved and restored with the worker's states."""

from __future__ import annotations

import random

from chainsense.ai.monitor import ShipmentLimit, StreamMonitor, Thresholds
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
T0 = 1_767_225_600_000
LIMIT = ShipmentLimit(
    shipment=7, schema=COLD.id, value_index=0, min_value=300, max_value=500,
    window_start_ms=T0 + 600_000, window_end_ms=T0 + 1_200_000,
)  # fmt: skip


def feed(monitor: StreamMonitor, device: str, temps: list[int], start: int = 0) -> list[str]:
    """Readings a second apart from ``T0 + start`` s; the checks of the alarms opened."""
    rng = random.Random(3)
    for i, temp in enumerate(temps):
        monitor.observe(
            reading_id=start + i + 1, device=device, schema=COLD.id,
            timestamp=T0 + (start + i) * 1000, values=(temp, 600 + rng.randint(0, 5)),
        )  # fmt: skip
    return [a.check for a in monitor.take_alarms() if a.first_seen_ms >= T0 + start * 1000]


def noisy(n: int, seed: int, mean: int = 420) -> list[int]:
    rng = random.Random(seed)
    return [mean + rng.randint(-15, 15) for _ in range(n)]


def test_a_shipment_range_is_a_hard_limit_during_its_window_only() -> None:
    monitor = StreamMonitor(BUILTIN_SCHEMAS, Thresholds())
    monitor.watch_shipment(["0xLogger"], LIMIT)
    assert feed(monitor, "0xlogger", noisy(600, 1)) == []
    # in the window: 5.20 Cel is inside the schema's 2-8 but outside the shipment's 3-5
    feed(monitor, "0xlogger", noisy(60, 2), start=600)
    monitor.observe(
        reading_id=10_000, device="0xlogger", schema=COLD.id, timestamp=T0 + 660_000,
        values=(520, 600),
    )  # fmt: skip
    [alarm] = monitor.take_alarms()
    assert (alarm.check, alarm.severity, alarm.metrics) == ("limit", "critical", ["temperature"])
    assert "outside the hard limit 3 to 5 Cel" in alarm.message
    assert (alarm.expected_low, alarm.expected_high) == ("3.00", "5.00")


def test_outside_the_window_or_for_another_device_it_does_not_apply() -> None:
    monitor = StreamMonitor(BUILTIN_SCHEMAS, Thresholds())
    monitor.watch_shipment(["0xLogger"], LIMIT)
    for device in ("0xlogger", "0xother"):
        feed(monitor, device, noisy(300, 4))
    checks = []
    for device, t in (("0xlogger", T0 + 400_000), ("0xother", T0 + 700_000)):
        r = monitor.streams[(device, COLD.name)].guard.step(
            {"temperature": 4.6, "humidity": 600 / 10 ** COLD.metrics[1].scale}, t,
            limits=monitor._shipment_limits(device, COLD, t),
        )  # fmt: skip
        checks.append(r.check)
    assert "limit" not in checks
    assert monitor._shipment_limits("0xLOGGER", COLD, T0 + 700_000) == {"temperature": (3.0, 5.0)}


def test_the_limit_survives_its_saved_state() -> None:
    state = LIMIT.to_state()
    assert ShipmentLimit.from_state(state) == LIMIT
    assert isinstance(state["schema"], str)
