"""MQTT 5 transport: the bridge from a broker into the ingest pipeline (receipts after commit).

Only this package, ``api/`` and ``cli/`` (and the device side's own MQTT uplink) know brokers.
The protocol is public: see docs/mqtt.md and :mod:`chainsense.mqtt.topics`.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from chainsense.mqtt.bridge import MqttBridge, Receipt
from chainsense.mqtt.url import BrokerUrl

if TYPE_CHECKING:
    from chainsense.config import Settings
    from chainsense.mqtt.bridge import Ingest

__all__ = ["BrokerUrl", "MqttBridge", "Receipt", "bridge_from_settings"]


def bridge_from_settings(settings: Settings, ingest: Ingest) -> MqttBridge:
    """The bridge ``CHAINSENSE_MQTT_*`` describe (``CHAINSENSE_MQTT_URL`` must be set)."""
    assert settings.mqtt_url is not None
    return MqttBridge(
        ingest=ingest,
        url=BrokerUrl.parse(settings.mqtt_url.get_secret_value()),
        client_id=settings.mqtt_client_id or f"chainsense-{socket.gethostname()}-{settings.port}",
        max_batch=settings.max_batch,
        max_body_bytes=settings.max_body_bytes,
        receive_maximum=settings.mqtt_receive_maximum,
        session_expiry=settings.mqtt_session_expiry,
        leave_on_stop=settings.mqtt_leave_on_stop,
    )
