"""The MQTT path under failures, with real processes: ``kill -9`` of the platform under load, a
broker restart, and two platform processes sharing the subscription. The devices are paho-mqtt
clients publishing eth-account-signed readings; what is checked is only what a device and an
auditor can see: receipts, and the store's readings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.mqtt.support import Broker, PahoDevice, Serve, eth_account_reading, wait_bridged

pytestmark = [pytest.mark.chain, pytest.mark.slow]


class Fleet:
    """Devices that publish one reading per message, in seq order, without waiting for receipts
    (so messages are in flight when something dies)."""

    def __init__(self, broker: Broker, serve: Serve, keys: tuple[str, str], count: int) -> None:
        self.operator, self.reader = keys
        self.accounts = [Account.create() for _ in range(count)]
        self.domain = serve.chain()
        for account in self.accounts:
            serve.register(self.operator, account.address)
        self.devices = [PahoDevice(broker.port, a.address) for a in self.accounts]
        self.next_seq = dict.fromkeys(range(count), 1)
        self.sent: dict[str, tuple[int, int]] = {}  # correlation -> (device index, seq)

    def publish_round(self) -> None:
        for i, (account, device) in enumerate(zip(self.accounts, self.devices, strict=True)):
            seq = self.next_seq[i]
            correlation = device.publish(eth_account_reading(account, seq, self.domain))
            self.sent[correlation] = (i, seq)
            self.next_seq[i] = seq + 1

    def publish_rounds_in_lockstep(self, rounds: int) -> None:
        """Each device waits for its receipt before publishing its next reading: the protocol's
        window of one, without which two processes could commit a device's seq 6 before 5."""
        for _ in range(rounds):
            self.publish_round()
            self.wait_all_receipted()

    def stream(self, stop: threading.Event, pause: float = 0.01) -> threading.Thread:
        def run() -> None:
            while not stop.is_set():
                self.publish_round()
                time.sleep(pause)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def burst(self, per_device: int) -> None:
        """Sign ``per_device`` readings for every device first, then publish them all as fast
        as the broker takes them: when this returns, the platform still has the last ones in
        hand (received, not yet acknowledged), however fast it is."""
        signed = []
        for _ in range(per_device):
            for i, account in enumerate(self.accounts):
                seq = self.next_seq[i]
                signed.append((i, seq, eth_account_reading(account, seq, self.domain)))
                self.next_seq[i] = seq + 1
        for i, seq, reading in signed:
            self.sent[self.devices[i].publish(reading)] = (i, seq)

    def receipts(self) -> dict[tuple[int, int], tuple[int, Any]]:
        """(device, seq) -> (status, body) of every receipt received."""
        found: dict[tuple[int, int], tuple[int, Any]] = {}
        for i, device in enumerate(self.devices):
            for correlation, receipt in list(device.receipts.items()):
                if correlation in self.sent:
                    found[self.sent[correlation]] = receipt
                    assert self.sent[correlation][0] == i
        return found

    def wait_all_receipted(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.receipts()) < len(self.sent):
            assert time.monotonic() < deadline, (
                f"{len(self.sent) - len(self.receipts())} of {len(self.sent)} never receipted"
            )
            time.sleep(0.2)

    def check_store(self, serve: Serve) -> None:
        """Every receipted reading is stored once with the receipted id; nothing is stored that
        was not sent; nothing twice; and (the broker redelivers what was not acknowledged) every
        reading sent is stored."""
        receipts = self.receipts()
        for (i, seq), (status, body) in receipts.items():
            assert status in (200, 201), (i, seq, body)
            assert body["status"] in ("stored", "duplicate"), body
        for i, account in enumerate(self.accounts):
            stored = serve.stored(self.reader, account.address)
            seqs = [r["seq"] for r in stored]
            assert len(seqs) == len(set(seqs)), "a reading stored twice"
            assert sorted(seqs) == list(range(1, self.next_seq[i])), "a sent reading is missing"
            ids = {r["seq"]: r["id"] for r in stored}
            for (j, seq), (_, body) in receipts.items():
                if j == i:
                    assert ids[seq] == body["id"], "receipted id differs from the stored one"

    def close(self) -> None:
        for device in self.devices:
            device.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker", extra="log_type all\n")
    broker.start()
    yield broker
    broker.stop()


def _serve(tmp_path: Path, broker: Broker) -> tuple[Serve, tuple[str, str]]:
    serve = Serve(tmp_path / "data", broker.url)
    operator = serve.cli("apikey", "create", "--name", "op", "--scope", "operator")
    reader = serve.cli("apikey", "create", "--name", "rd", "--scope", "reader")
    serve.start()
    return serve, (operator, reader)


def kill_9_under_load(tmp_path: Path, broker: Broker, kills: int, *, most: int = 0) -> None:
    """``kills`` times (or, with ``most``, until a kill left a message unacknowledged, at most
    ``most`` times): stream, then a burst, ``kill -9`` the platform with the burst's last
    messages in hand, keep publishing while it is down, restart it; then every reading sent is
    receipted and stored exactly once."""
    serve, keys = _serve(tmp_path, broker)
    fleet = Fleet(broker, serve, keys, count=4)
    log_path = broker.workdir / "mosquitto.log"
    try:
        wait_bridged(fleet.devices[0])
        time.sleep(2.5)  # past Anvil's 1 s state interval: the registrations survive a kill -9
        done = 0
        while done < max(kills, most):
            stop = threading.Event()
            sender = fleet.stream(stop)
            time.sleep(1.5)
            stop.set()
            sender.join(30)
            # a stream paced by eth-account's signing leaves the platform idle between rounds
            # (a kill then found nothing unacknowledged); a burst of pre-signed readings does not
            fleet.burst(20)
            serve.kill()  # messages in flight: some committed and not acknowledged
            stop = threading.Event()
            sender = fleet.stream(stop)
            time.sleep(0.5)  # devices keep publishing while the platform is down
            stop.set()
            sender.join(30)
            serve.start()
            done += 1
            if done >= kills and most:
                fleet.wait_all_receipted()
                if "d1, q1" in log_path.read_text():
                    break
        fleet.wait_all_receipted()
        fleet.check_store(serve)
        log = log_path.read_text()
        assert "Sending PUBLISH to chainsense-" in log
        # redelivered messages carry the DUP flag: a kill really left some unacknowledged
        assert "d1, q1" in log, f"no kill of {done} left a message unacknowledged"
    finally:
        fleet.close()
        serve.stop()


@pytest.mark.timeout(600)
def test_kill_9_under_mqtt_load_then_restart_stores_everything_once(
    tmp_path: Path, broker: Broker
) -> None:
    kill_9_under_load(tmp_path, broker, kills=3)


@pytest.mark.timeout(600)
def test_broker_restart_loses_nothing_and_the_bridge_reconnects(
    tmp_path: Path, broker: Broker
) -> None:
    serve, keys = _serve(tmp_path, broker)
    fleet = Fleet(broker, serve, keys, count=2)
    try:
        wait_bridged(fleet.devices[0])
        for _ in range(5):
            fleet.publish_round()
        fleet.wait_all_receipted()
        # the platform stops; readings wait at the broker, in the platform's session; the broker
        # restarts (saving and loading its persistence file); then the platform comes back
        serve.stop()
        for _ in range(5):
            fleet.publish_round()
        fleet.close()
        broker.stop()
        broker.start()
        serve.start()
        fleet.devices = [PahoDevice(broker.port, a.address) for a in fleet.accounts]
        # the earlier receipts went to the old clients' response topics; ask for the stored state
        deadline = time.monotonic() + 60
        while any(
            len(serve.stored(fleet.reader, a.address)) < 10 for a in fleet.accounts
        ):  # the queued readings arrive without any new publish
            assert time.monotonic() < deadline, "readings queued across the restart were lost"
            time.sleep(0.2)
        # and while the platform runs, a broker restart: the bridge reconnects by itself
        broker.stop()
        time.sleep(1.0)
        broker.start()
        for device in fleet.devices:
            device.close()
        fleet.devices = [PahoDevice(broker.port, a.address) for a in fleet.accounts]
        wait_bridged(fleet.devices[0], timeout=90)
        fleet.sent = {}
        for _ in range(3):
            fleet.publish_round()
        fleet.wait_all_receipted()
        fleet.check_store(serve)
    finally:
        fleet.close()
        serve.stop()


@pytest.mark.timeout(600)
def test_two_platform_processes_share_the_subscription(tmp_path: Path, broker: Broker) -> None:
    first, keys = _serve(tmp_path, broker)
    deployer, operator, anchorer = ANVIL_DEV_KEYS[:3]
    second = Serve(
        tmp_path / "data",
        broker.url,
        CHAINSENSE_RPC_URL=f"http://127.0.0.1:{first.anvil_port}",
        CHAINSENSE_ANCHORING="false",
        CHAINSENSE_DEPLOYER_KEY=deployer,
        CHAINSENSE_OPERATOR_KEY=operator,
        CHAINSENSE_ANCHORER_KEY=anchorer,
        CHAINSENSE_MQTT_LEAVE_ON_STOP="true",
    )
    second.log = tmp_path / "serve-second.log"
    second.start()
    fleet = Fleet(broker, first, keys, count=6)
    try:
        wait_bridged(fleet.devices[0])
        time.sleep(1.5)  # both processes' registry views have the new devices
        fleet.publish_rounds_in_lockstep(20)
        fleet.check_store(first)
        log = (broker.workdir / "mosquitto.log").read_text()
        for serve in (first, second):
            client = f"chainsense-{_hostname()}-{serve.port}"
            assert log.count(f"Sending PUBLISH to {client} ") > 10, f"{client} got no share"
        # one process stops, leaving the group: the other takes every new message
        second.stop()
        fleet.publish_rounds_in_lockstep(10)
        fleet.check_store(first)
    finally:
        fleet.close()
        second.stop()
        first.stop()


def _hostname() -> str:
    import socket

    return socket.gethostname()
