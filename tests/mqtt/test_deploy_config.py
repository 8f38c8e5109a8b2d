"""The shipped Mosquitto configuration (deploy/mosquitto/) on a real Mosquitto: per-client users,
and ACLs so a device publishes only on its own readings topic and reads only its own receipts."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt.support import _port_open
from tests.support import free_port

DEPLOY = Path(__file__).parents[2] / "deploy" / "mosquitto"
A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
USERS = {"chainsense": "platform-secret", A: "secret-a", B: "secret-b"}


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("mosquitto-deploy")
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/etc/mosquitto/chainsense/", f"{work}/").replace(
        "/var/lib/mosquitto/", f"{work}/"
    )
    (work / "mosquitto.conf").write_text(conf + "\nuser root\n")
    (work / "acl").write_text((DEPLOY / "acl").read_text())
    passwd = work / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(work / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _port_open(port):
        assert proc.poll() is None, "mosquitto refused the shipped configuration"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


class Client:
    def __init__(self, port: int, user: str | None, password: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connack: Any = None
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.messages: list[str] = []
        self.event = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.messages.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.event.wait(10)

    def _on_connect(self, *args: Any) -> None:
        self.connack = args[3]
        self.event.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.pubacks[mid] = reason.value

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subacks.extend(r.value for r in reasons)

    def publish(self, topic: str) -> int:
        info = self.client.publish(topic, b"{}", qos=1)
        deadline = time.monotonic() + 10
        while info.mid not in self.pubacks:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 10
        while len(self.subacks) == before:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return self.subacks[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_anonymous_clients_and_wrong_passwords_are_refused(port: int) -> None:
    anonymous = Client(port, None)
    assert anonymous.connack.value == 0x87  # not authorized
    anonymous.close()
    wrong = Client(port, A, "guess")
    assert wrong.connack.value in (0x86, 0x87)  # bad user name or password / not authorized
    wrong.close()


def test_a_device_publishes_only_on_its_own_topic_and_reads_only_its_receipts(port: int) -> None:
    platform = Client(port, "chainsense", USERS["chainsense"])
    device = Client(port, A, USERS[A])
    try:
        assert platform.subscribe("$share/chainsense/chainsense/v1/devices/+/readings") == 1
        assert device.subscribe(f"chainsense/v1/devices/{A}/receipts/#") == 1
        # Mosquitto grants the subscription, but delivers nothing the ACL does not let it read
        device.subscribe(f"chainsense/v1/devices/{B}/receipts")
        assert device.publish(f"chainsense/v1/devices/{A}/readings") == 0
        assert device.publish(f"chainsense/v1/devices/{B}/readings") == 0x87
        deadline = time.monotonic() + 5
        while not platform.messages:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        assert platform.messages == [f"chainsense/v1/devices/{A}/readings"]
        # the platform writes receipts, and nothing else
        assert platform.publish(f"chainsense/v1/devices/{B}/receipts") == 0
        assert platform.publish(f"chainsense/v1/devices/{A}/receipts/x") == 0
        assert platform.publish(f"chainsense/v1/devices/{A}/readings") == 0x87
        deadline = time.monotonic() + 5
        while not device.messages:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        assert device.messages == [f"chainsense/v1/devices/{A}/receipts/x"]
    finally:
        platform.close()
        device.close()
