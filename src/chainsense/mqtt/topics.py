"""The public MQTT topics of ChainSense (ARCHITECTURE "Wire formats"; docs/mqtt.md).

>>> device_of("chainsense/v1/devices/0x90f79bf6eb2c4f870365e785982e1f101e93b906/readings")
'0x90f79bf6eb2c4f870365e785982e1f101e93b906'
>>> device_of("chainsense/v1/devices/0x90F79bf6EB2c4f870365E785982E1f101E93b906/readings") is None
True
>>> receipts_topic("0xab" + "00" * 19)
'chainsense/v1/devices/0xab00000000000000000000000000000000000000/receipts'
"""

from __future__ import annotations

import re

__all__ = [
    "READINGS_FILTER",
    "SHARE_GROUP",
    "device_of",
    "readings_topic",
    "receipts_topic",
    "response_topic_allowed",
    "shared_filter",
]

PREFIX = "chainsense/v1/devices"
READINGS_FILTER = f"{PREFIX}/+/readings"
SHARE_GROUP = "chainsense"
_READINGS = re.compile(r"^chainsense/v1/devices/(0x[0-9a-f]{40})/readings$")


def shared_filter(group: str = SHARE_GROUP) -> str:
    """The shared subscription every platform process joins, so they split the messages."""
    return f"$share/{group}/{READINGS_FILTER}"


def readings_topic(address: str) -> str:
    """Where a device publishes its readings (address in lowercase hex, ``0x`` prefix)."""
    return f"{PREFIX}/{address.lower()}/readings"


def receipts_topic(address: str) -> str:
    """Where the platform publishes a device's receipts when no Response Topic was given."""
    return f"{PREFIX}/{address.lower()}/receipts"


def device_of(topic: str) -> str | None:
    """The device address a readings topic names, or None if it is not one (the address must be
    lowercase hex with the ``0x`` prefix)."""
    match = _READINGS.match(topic)
    return match.group(1) if match else None


def response_topic_allowed(topic: str, address: str) -> bool:
    """A Response Topic is honoured only inside the device's own receipts tree, so a device
    cannot make the platform publish on anyone else's topics (nor on a readings topic)."""
    base = receipts_topic(address)
    return topic == base or (topic.startswith(base + "/") and "+" not in topic and "#" not in topic)
