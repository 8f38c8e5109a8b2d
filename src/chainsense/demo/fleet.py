"""The demo fleet: device keys derived from a seed (so a restarted platform recognises its own
demo devices), and the signed readings each device sends.

>>> fleet = DemoFleet.derive("doc")
>>> fleet.keys["truck-1"].address == DemoFleet.derive("doc").keys["truck-1"].address
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from chainsense.ai.synthetic import make_meter
from chainsense.identity import DeviceKey, Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

__all__ = [
    "CHARGER",
    "COLDCHAIN",
    "DEVICES",
    "MACHINE",
    "METER",
    "DemoFleet",
    "machine_history",
    "meter_history",
]

COLDCHAIN = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1").id
METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1").id
CHARGER = BUILTIN_SCHEMAS.by_name("chainsense.charger.v1").id
MACHINE = BUILTIN_SCHEMAS.by_name("chainsense.machine.v1").id

DEVICES: dict[str, bytes] = {
    "truck-1": COLDCHAIN,
    "truck-2": COLDCHAIN,
    "home-a": METER,
    "home-b": METER,
    "home-c": METER,
    "charger-1": CHARGER,
    "machine-1": MACHINE,
}
"""Every demo device and its schema."""

_WEEK_MS = 7 * 86_400_000


@dataclass
class DemoFleet:
    """One key per demo device, and the next seq of each."""

    keys: dict[str, DeviceKey]
    seqs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def derive(cls, seed: str) -> DemoFleet:
        """Keys derived as keccak256("chainsense-demo/<seed>/<device>"): demo keys, not secrets."""
        return cls({n: DeviceKey(keccak(text=f"chainsense-demo/{seed}/{n}")) for n in DEVICES})

    def address(self, name: str) -> str:
        return self.keys[name].address

    def reading(
        self, name: str, timestamp_ms: int, values: tuple[int, ...], *, chain_id: int,
        registry: str,
    ) -> dict[str, Any]:  # fmt: skip
        """The next signed reading of ``name`` in the JSON form POST /v1/readings takes."""
        seq = self.seqs.get(name, 0) + 1
        self.seqs[name] = seq
        key = self.keys[name]
        reading = Reading(key.address, seq, timestamp_ms, DEVICES[name], values)
        signature = key.sign(reading, chain_id, registry)
        return reading.to_json() | {"signature": "0x" + signature.hex()}


def meter_history(
    seed: int, *, end_ms: int, days: int, solar: bool = True, base_load_wh: int = 0
) -> list[tuple[int, tuple[int, int]]]:
    """``days`` of 15-minute household readings (imported Wh, exported Wh) ending before
    ``end_ms``, shifted by whole weeks from the synthetic series so weekdays stay aligned.
    ``solar``: rooftop export by day (up to 400 Wh); ``base_load_wh``: a steady extra import
    (a heat pump, a wallbox) in every reading."""
    times, values = make_meter(seed=seed, days=days)
    shift = (end_ms - times[-1]) // _WEEK_MS * _WEEK_MS
    rng = random.Random(seed)
    out = []
    for t, v in zip(times, values, strict=True):
        hour = (t % 86_400_000) / 3_600_000
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12)) if solar else 0.0
        out.append((t + shift, (int(v) + base_load_wh, int(sun * 400 * rng.uniform(0.8, 1.0)))))
    return out


def machine_history(
    seed: int, *, end_ms: int, clean_hours: int = 72, drift_hours: int = 12
) -> list[tuple[int, tuple[int, int, int]]]:
    """5-minute machine readings (vibration m/s2 x1000, bearing Cel x100, current A x1000)
    ending at ``end_ms``: ``clean_hours`` steady, then ``drift_hours`` of a vibration ramp of
    +3.5 m/s2 (a bearing wearing out), bearing temperature following it slightly."""
    rng = random.Random(seed)
    step = 300_000
    n_clean, n_drift = clean_hours * 12, drift_hours * 12
    start = end_ms - (n_clean + n_drift - 1) * step
    out = []
    for i in range(n_clean + n_drift):
        ramp = max(0, i - n_clean + 1) / n_drift
        vibration = 2.0 + 3.5 * ramp + rng.gauss(0, 0.05)
        temperature = 55.0 + 6.0 * ramp + rng.gauss(0, 0.2)
        current = 12.0 + rng.gauss(0, 0.1)
        out.append(
            (
                start + i * step,
                (round(vibration * 1000), round(temperature * 100), round(current * 1000)),
            )
        )
    return out
