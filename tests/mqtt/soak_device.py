"""The device side over MQTT: the SDK (``DeviceClient(mqtt=...)``) and ``chainsense device send
--mqtt`` keep each reading in the offline buffer until the platform's receipt says stored, and
deliver in order and exactly once across a broker restart and a platform ``kill -9``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainsense.device import DeviceClient, Domain, OfflineBuffer
from chainsense.identity import DeviceKey
from tests.mqtt.support import Broker, PahoDevice, Serve, wait_bridged

pytestmark = [pytest.mark.chain, pytest.mark.slow]

VALUES = {"temperature": "4.15", "humidity": 62}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Broker, Serve, str, str]]:
    broker = Broker(tmp_path / "broker")
    broker.start()
    serve = Serve(tmp_path / "data", broker.url)
    operator = serve.cli("apikey", "create", "--name", "op", "--scope", "operator")
    reader = serve.cli("apikey", "create", "--name", "rd", "--scope", "reader")
    serve.start()
    try:
        yield broker, serve, operator, reader
    finally:
        serve.stop()
        broker.stop()


@pytest.mark.timeout(600)
def test_sdk_delivers_exactly_once_in_order_across_broker_restart_and_platform_kill(
    setup: tuple[Broker, Serve, str, str], tmp_path: Path
) -> None:
    broker, serve, operator, reader = setup
    key = DeviceKey.generate()
    serve.register(operator, key.address)
    probe = PahoDevice(broker.port, key.address)
    wait_bridged(probe)
    probe.close()
    domain = Domain(*serve.chain())

    async def scenario() -> None:
        with OfflineBuffer(tmp_path / "device.sqlite") as buffer:
            async with DeviceClient(
                serve.url, key, buffer, domain=domain, mqtt=broker.url
            ) as device:
                assert device.mqtt is not None
                device.mqtt.receipt_timeout = 2
                device.mqtt.retries = 0
                for _ in range(3):
                    _, report = await device.send("chainsense.coldchain.v1", VALUES)
                    assert report.stored == 1
                    assert report.complete
                # the broker goes down: readings are recorded, kept, not lost
                broker.stop()
                for _ in range(3):
                    _, report = await device.send("chainsense.coldchain.v1", VALUES)
                    assert report.unreachable
                assert buffer.pending_count() == 3
                broker.start()
                # the platform is killed: nothing receipts; the readings stay buffered
                await asyncio.to_thread(serve.kill)
                await device.record("chainsense.coldchain.v1", VALUES)
                report = await device.flush()
                assert report.unreachable
                assert report.pending == 4
                await asyncio.to_thread(serve.start)
                device.mqtt.receipt_timeout = 10
                device.mqtt.retries = 5
                report = await device.flush()
                assert report.complete, report
                assert report.stored + report.duplicates == 4
                assert buffer.pending_count() == 0
                assert buffer.rejected_count() == 0

    asyncio.run(scenario())
    stored = serve.stored(reader, key.address)
    assert [r["seq"] for r in sorted(stored, key=lambda r: r["id"])] == list(range(1, 8))
