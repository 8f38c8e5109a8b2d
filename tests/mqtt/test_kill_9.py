"""The kill -9 test of ``make test``: one ``kill -9`` of a real ``chainsense serve`` under MQTT
load (up to three when a kill found nothing unacknowledged), then restart; every reading sent is
receipted and stored exactly once. ``make test-mqtt`` runs the longer version (three kills,
broker restarts, two platform processes: ``soak_resilience.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mqtt.soak_resilience import broker, kill_9_under_load
from tests.mqtt.support import Broker

pytestmark = [pytest.mark.chain, pytest.mark.slow]

__all__ = ["broker"]  # the fixture, used by name


@pytest.mark.timeout(300)
def test_one_kill_9_under_mqtt_load_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, broker: Broker
) -> None:
    # one kill, or a few more when a fast machine had drained every message at the first
    kill_9_under_load(tmp_path, broker, kills=1, most=3)
