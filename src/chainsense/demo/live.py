"""The demo fleet streaming live into a running platform (``make run``): the demo devices are
registered on first start, then each posts one signed reading per period through the platform's
ingest pipeline (the path POST /v1/readings takes), stamped with the wall clock.

When a broker is configured (``CHAINSENSE_MQTT_DEMO_URL``, else ``CHAINSENSE_MQTT_URL``), each demo
device instead publishes over MQTT like a real device: it signs into its own offline buffer
(``<data dir>/demo-fleet/<name>.sqlite``) and delivers through :class:`MqttUplink`, the reading
leaving the buffer only when the platform's receipt says it is stored."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any

from chainsense.demo.fleet import DEVICES, DemoFleet

if TYPE_CHECKING:
    from chainsense.platform import Platform

__all__ = ["live_values", "stream_fleet"]

log = logging.getLogger(__name__)


def live_values(name: str, t_ms: int, step: int, rng: random.Random) -> tuple[int, ...]:
    """A plausible reading of demo device ``name`` at ``t_ms`` (``step``: readings so far).

    >>> live_values("truck-1", 0, 0, random.Random(1))[1]
    650
    """
    minute = (t_ms // 60_000) % 60
    if name.startswith("truck"):
        # truck-2's compressor fails for 5 minutes every hour: out of its 2-8 Cel range
        breach = name == "truck-2" and 30 <= minute < 35
        return (round((9.0 if breach else 4.5) * 100 + rng.gauss(0, 8)), 650)
    if name.startswith("home"):
        hour = (t_ms % 86_400_000) / 3_600_000
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
        return (max(0, round(rng.gauss(1.5, 0.3))), round(sun * 2 * rng.uniform(0.8, 1.0)))
    if name.startswith("charger"):
        return (step * 3,)
    # the machine: vibration slowly rising (wear), bearing temperature following it
    wear = min(step / 20_000, 1.0)
    return (
        round((2.0 + 3.0 * wear + rng.gauss(0, 0.05)) * 1000),
        round((55.0 + 5.0 * wear + rng.gauss(0, 0.2)) * 100),
        round((12.0 + rng.gauss(0, 0.1)) * 1000),
    )


async def stream_fleet(platform: Platform, *, period: float = 1.0, seed: str = "live") -> None:
    """Register the demo fleet (once) and post a reading per device every ``period`` seconds,
    until cancelled."""
    chain = platform.chain
    fleet = DemoFleet.derive(seed)
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
    for name, key in fleet.keys.items():
        record = await platform.store.devices.get(key.address)
        if record is None:
            fn = registry.functions.register(key.address, chain.operator.address, bytes(32))
            await chain.operator.transact(fn)
            log.info("demo fleet: registered %s as %s", name, key.address)
        fleet.seqs[name] = record.last_seq if record is not None else 0
    await platform.registry.sync()
    rng = random.Random(seed)
    url = platform.settings.mqtt_demo_url or platform.settings.mqtt_url
    if url is not None:
        await _stream_mqtt(platform, fleet, url.get_secret_value(), period, rng)
        return
    step = 0
    while True:
        now = int(time.time() * 1000)
        items: list[dict[str, Any]] = [
            fleet.reading(
                name, now, live_values(name, now, step, rng),
                chain_id=chain.deployment.chain_id, registry=registry.address,
            )
            for name in fleet.keys
        ]  # fmt: skip
        results = await platform.ingest.ingest(items)
        for result in results:
            if result.error is not None:
                log.warning("demo fleet reading refused: %s", result.error.problem())
        step += 1
        await asyncio.sleep(period)


async def _stream_mqtt(
    platform: Platform, fleet: DemoFleet, url: str, period: float, rng: random.Random
) -> None:
    """Every demo device publishes one reading per ``period`` over MQTT, from its own buffer."""
    from chainsense.device.buffer import Domain, OfflineBuffer
    from chainsense.device.mqtt import MqttUplink
    from chainsense.identity import Reading
    from chainsense.mqtt.url import BrokerUrl

    chain = platform.chain
    domain = Domain(chain.deployment.chain_id, chain.deployment.address("DeviceRegistry"))
    folder = platform.settings.data_dir / "demo-fleet"
    folder.mkdir(parents=True, exist_ok=True)
    broker = BrokerUrl.parse(url)
    log.info("demo fleet: publishing over MQTT through %s", broker.redacted)

    async def device(name: str) -> None:
        key = fleet.keys[name]
        schema = DEVICES[name]
        buffer = await asyncio.to_thread(OfflineBuffer, folder / f"{name}.sqlite")
        await asyncio.to_thread(buffer.advance_seq, fleet.seqs[name] + 1)
        step = 0
        try:
            async with MqttUplink(broker, buffer, address=key.address, receipt_timeout=5) as up:
                while True:
                    now = int(time.time() * 1000)
                    values = live_values(name, now, step, rng)

                    def sign(seq: int, now: int = now, values: tuple[int, ...] = values) -> Any:
                        reading = Reading(key.address, seq, now, schema, values)
                        return reading, key.sign(
                            reading, domain.chain_id, domain.verifying_contract
                        )

                    await asyncio.to_thread(buffer.append, key.address, domain, sign)
                    report = await up.flush()
                    if report.error:
                        log.warning("demo fleet %s: %s (%d buffered)", name, report.error,
                                    report.pending)  # fmt: skip
                    for refused in report.rejected:
                        log.warning("demo fleet reading refused: %s", refused.summary)
                    step += 1
                    await asyncio.sleep(period)
        finally:
            buffer.close()

    await asyncio.gather(*(device(name) for name in fleet.keys))
