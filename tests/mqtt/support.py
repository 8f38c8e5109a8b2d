"""A private Mosquitto, a real ``chainsense serve`` bridged to it, and a paho-mqtt device (the
independent client: nothing of ChainSense's MQTT code is used to publish or read receipts)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from eth_account import Account
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import free_port

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """Our own ``mosquitto -c <config>`` on a free port with a persistence dir in ``workdir``, so
    tests can kill and restart it (the shared broker on 1883 is never touched)."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"  # else it drops to the mosquitto user, who cannot write in tmp_path
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            f"log_dest file {workdir}/mosquitto.log\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)])
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            assert self.proc.poll() is None, (self.workdir / "mosquitto.log").read_text()
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean stop (SIGTERM): Mosquitto saves its persistence file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


class Serve:
    """``chainsense serve`` as a child process on private ports and a private data dir, bridged
    to ``broker_url``."""

    def __init__(self, data_dir: Path, broker_url: str, **env: str) -> None:
        self.data_dir = data_dir
        self.broker_url = broker_url
        self.port = free_port()
        self.anvil_port = free_port()
        self.extra = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        env.update(
            CHAINSENSE_DATA_DIR=str(self.data_dir),
            CHAINSENSE_PORT=str(self.port),
            CHAINSENSE_ANVIL_PORT=str(self.anvil_port),
            CHAINSENSE_MQTT_URL=self.broker_url,
            CHAINSENSE_AI_ENABLED="false",
            CHAINSENSE_MARKET_AGENT="false",
        )
        env.update(self.extra)
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chainsense", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chainsense", "-v", "serve"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300  # the shared 2-core machine can be very busy
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "serve died:\n" + self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("serve did not become ready:\n" + self.log.read_text())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)

    def chain(self) -> tuple[int, str]:
        body = httpx.get(self.url + "/v1/chain", timeout=10).json()
        return body["chain_id"], body["contracts"]["DeviceRegistry"]["address"]

    def register(self, operator_key: str, address: str) -> None:
        response = httpx.post(
            self.url + "/v1/devices",
            json={"address": address},
            headers={"Authorization": f"Bearer {operator_key}"},
            timeout=60,
        )
        assert response.status_code == 201, response.text

    def stored(self, reader_key: str, address: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"device": address, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = httpx.get(
                self.url + "/v1/readings",
                params=params,
                headers={"Authorization": f"Bearer {reader_key}"},
                timeout=10,
            ).json()
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def eth_account_reading(
    account: Any, seq: int, domain: tuple[int, str], values: tuple[int, ...] = (415, 620)
) -> dict[str, Any]:
    """A reading signed by eth-account from typed data written out here, by hand, from the
    ARCHITECTURE wire format (not from ChainSense's own EIP-712 code)."""
    message = {
        "device": account.address,
        "seq": seq,
        "timestamp": int(time.time() * 1000),
        "schema": "0x" + COLD.id.hex(),
        "values": list(values),
    }
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Reading": [
                {"name": "device", "type": "address"},
                {"name": "seq", "type": "uint64"},
                {"name": "timestamp", "type": "uint64"},
                {"name": "schema", "type": "bytes32"},
                {"name": "values", "type": "int64[]"},
            ],
        },
        "primaryType": "Reading",
        "domain": {
            "name": "ChainSense",
            "version": "1",
            "chainId": domain[0],
            "verifyingContract": domain[1],
        },
        "message": message,
    }
    signed = Account.sign_typed_data(account.key, full_message=typed)
    return {**message, "signature": "0x" + bytes(signed.signature).hex()}


def readings_topic(address: str) -> str:
    return f"chainsense/v1/devices/{address.lower()}/readings"


class PahoDevice:
    """A paho-mqtt 2 client (MQTT 5) that publishes with a Response Topic and Correlation Data
    and collects the receipts: {correlation id: (status user property, body)}."""

    def __init__(self, broker_port: int, address: str, *, client_id: str | None = None) -> None:
        self.address = address.lower()
        self.receipts: dict[str, tuple[int, Any]] = {}
        self.user_properties: dict[str, dict[str, str]] = {}
        self.arrived: queue.Queue[str] = queue.Queue()
        self.response_topic = f"chainsense/v1/devices/{self.address}/receipts/{uuid.uuid4().hex}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"dev-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker_port)
        self.client.loop_start()
        self.client.subscribe(self.response_topic, qos=1)
        assert subscribed.wait(10)
        self._lock = threading.Lock()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        correlation = getattr(props, "CorrelationData", b"").decode()
        user = dict(getattr(props, "UserProperty", []))
        with self._lock:
            self.receipts[correlation] = (int(user.get("status", "0")), json.loads(msg.payload))
            self.user_properties[correlation] = user
        self.arrived.put(correlation)

    def publish(self, payload: Any, *, topic: str | None = None, correlation: str = "") -> str:
        correlation = correlation or uuid.uuid4().hex
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.response_topic
        props.CorrelationData = correlation.encode()
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(
            topic or readings_topic(self.address), data, qos=1, properties=props
        )
        info.wait_for_publish(10)
        return correlation

    def wait(self, correlation: str, timeout: float = 30) -> tuple[int, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if correlation in self.receipts:
                    return self.receipts[correlation]
            time.sleep(0.02)
        raise AssertionError(f"no receipt for {correlation} in {timeout} s")

    def request(self, payload: Any, *, topic: str | None = None, timeout: float = 30) -> Any:
        return self.wait(self.publish(payload, topic=topic), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_bridged(device: PahoDevice, timeout: float = 60) -> None:
    """Until the platform answers: publish a message it must refuse, until a receipt comes (the
    first ever start subscribes a moment after /readyz)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        correlation = device.publish(b"not json")
        with contextlib.suppress(AssertionError):
            device.wait(correlation, 2)
            return
    raise AssertionError("the bridge never answered")
