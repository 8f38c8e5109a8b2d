"""The live fleet's story (``make run``), through the AI worker's monitor as it runs: truck-2's
five minutes at 9 Cel each hour raise a critical alarm at once (the cold-chain range is a hard
limit) and its return clears it; the charger's cumulative counter, the meters, truck-1 and the
machine raise nothing in normal operation."""

from __future__ import annotations

import random

from chainsense.ai.monitor import StreamMonitor, Thresholds
from chainsense.demo.fleet import DEVICES
from chainsense.demo.live import live_values
from chainsense.store import AlarmChange
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

T0 = 1_767_225_600_000 + 5 * 3_600_000 + 55 * 60_000  # 05:55 UTC: sunrise and a :30 excursion


def run_fleet(minutes: int) -> list[AlarmChange]:
    monitor = StreamMonitor(BUILTIN_SCHEMAS, Thresholds())
    rng = random.Random("live")
    changes: list[AlarmChange] = []
    reading_id = 0
    for step in range(minutes * 60):
        now = T0 + step * 1000 + rng.randint(0, 20)  # one reading a second, with jitter
        for name, schema in DEVICES.items():
            reading_id += 1
            monitor.observe(
                reading_id=reading_id, device=name, schema=schema, timestamp=now,
                values=live_values(name, now, step, rng),
            )  # fmt: skip
        changes += monitor.take_alarms()
    return changes


def test_the_live_fleet_story() -> None:
    changes = run_fleet(42)
    assert {c.device for c in changes} == {"truck-2"}, [(c.device, c.message) for c in changes]
    [alarm] = {id(c): c for c in changes}.values()  # one alarm, opened, updated, then cleared
    start = T0 + 35 * 60_000  # 06:30: the compressor fails for five minutes
    end = start + 5 * 60_000
    assert (alarm.check, alarm.metrics, alarm.severity) == ("limit", ["temperature"], "critical")
    assert start <= alarm.first_seen_ms < start + 60_000
    assert alarm.count >= 290
    assert alarm.cleared_at_ms is not None
    assert end <= alarm.cleared_at_ms < end + 60_000
    assert "outside the hard limit 2 to 8 Cel" in alarm.message
