"""The MQTT path end to end: our own Mosquitto, a real ``chainsense serve`` bridged to it, and
readings signed by eth-account published with paho-mqtt. Receipts must carry exactly what the
HTTP path answers for the same input, and be sent only for what is stored."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from chainsense.identity import DeviceKey
from tests.mqtt.support import Broker, PahoDevice, Serve, eth_account_reading, wait_bridged

pytestmark = [pytest.mark.chain, pytest.mark.slow]

DEVICE_BURST = 30


@dataclass
class Platform:
    broker: Broker
    serve: Serve
    operator: str
    reader: str
    domain: tuple[int, str]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("mqtt-e2e")
    broker = Broker(base / "broker")
    broker.start()
    # a device may publish 30 messages at once, then one per 100 s (the default is 100 at once
    # and 20/s): each test's devices stay well within it, but the flood below does not
    serve = Serve(
        base / "data",
        broker.url,
        CHAINSENSE_RATE_LIMIT_DEVICE_BURST=str(DEVICE_BURST),
        CHAINSENSE_RATE_LIMIT_DEVICE_RATE="0.01",
    )
    try:
        operator = serve.cli("apikey", "create", "--name", "op", "--scope", "operator")
        reader = serve.cli("apikey", "create", "--name", "rd", "--scope", "reader")
        serve.start()
        yield Platform(broker, serve, operator, reader, serve.chain())
    finally:
        serve.stop()
        broker.stop()


def _device(
    platform: Platform, *, account: Any = None, register: bool = True
) -> tuple[Any, PahoDevice]:
    account = account or Account.create()
    if register:
        platform.serve.register(platform.operator, account.address)
    device = PahoDevice(platform.broker.port, account.address)
    wait_bridged(device)
    return account, device


def _http(platform: Platform, body: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        platform.serve.url + "/v1/readings",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    return response.status_code, response.json()


def test_eth_account_readings_over_mqtt_are_stored_and_receipted(platform: Platform) -> None:
    account, device = _device(platform)
    try:
        one = eth_account_reading(account, 1, platform.domain)
        status, body = device.request(one)
        assert status == 201, body
        assert body["status"] == "stored"
        assert body["seq"] == 1
        batch = [eth_account_reading(account, s, platform.domain) for s in (2, 3, 4)]
        status, body = device.request({"readings": batch})
        assert status == 200
        assert [r["status"] for r in body["results"]] == ["stored"] * 3
        assert body["stored"] == 3
        # a receipt means stored: every receipted id is in the store, with its seq
        stored = platform.serve.stored(platform.reader, account.address)
        assert sorted((r["seq"], r["id"]) for r in stored) == sorted(
            [(1, _id(device, one))] + [(r["seq"], r["id"]) for r in body["results"]]
        )
        # the same message again: an idempotent duplicate, same id, nothing stored twice
        status, again = device.request(one)
        assert (status, again["status"]) == (200, "duplicate")
        assert len(platform.serve.stored(platform.reader, account.address)) == 4
    finally:
        device.close()


def _id(device: PahoDevice, reading: dict[str, Any]) -> int:
    for _, body in device.receipts.values():
        if isinstance(body, dict) and body.get("seq") == reading["seq"] and "id" in body:
            return int(body["id"])
    raise AssertionError("no receipt for that reading")


def test_every_bad_input_gets_the_http_problem_in_its_receipt(platform: Platform) -> None:
    account, device = _device(platform)
    stranger = Account.create()  # signs fine but is not registered
    _, stranger_device = _device(platform, account=stranger, register=False)
    try:
        good = eth_account_reading(account, 1, platform.domain)
        assert device.request(good)[0] == 201
        other_domain = (platform.domain[0] + 1, platform.domain[1])
        cases: list[tuple[str, Any]] = [
            ("malformed json", b"{not json"),
            ("not an object", b"[1, 2]"),
            ("readings not a list", {"readings": 5}),
            ("empty batch", {"readings": []}),
            ("batch too large", {"readings": [good] * 1001}),
            ("missing field", {k: v for k, v in good.items() if k != "timestamp"}),
            ("bad signature hex", {**good, "seq": 2, "signature": "0xzz"}),
            ("short signature", {**good, "seq": 2, "signature": "0x1234"}),
            ("signed for another chain", eth_account_reading(account, 2, other_domain)),
            (
                "tampered value",
                {**eth_account_reading(account, 2, platform.domain), "values": [1, 2]},
            ),
            ("unknown schema", {**good, "seq": 2, "schema": "0x" + "00" * 32}),
            ("seq zero", {**good, "seq": 0}),
            (
                "replayed seq, other reading",
                eth_account_reading(account, 1, platform.domain, (1, 1)),
            ),
            ("timestamp far in the future", {**good, "seq": 2, "timestamp": 2**62}),
        ]
        for name, body in cases:
            http_status, http_body = _http(platform, body)
            mqtt_status, mqtt_body = device.request(body)
            assert mqtt_status == http_status, (name, mqtt_body, http_body)
            if name == "timestamp far in the future":  # the detail says how far, from now
                del mqtt_body["detail"], http_body["detail"]
            assert mqtt_body == http_body, name
            assert http_status >= 400, name
        # an unregistered device, on its own topic: the same 403 as over HTTP
        unknown = eth_account_reading(stranger, 1, platform.domain)
        status, body = stranger_device.request(unknown)
        assert (status, body["type"]) == (403, "/problems/unknown-device")
        assert _http(platform, unknown) == (status, body)
    finally:
        device.close()
        stranger_device.close()


def test_a_reading_published_on_another_devices_topic_is_refused(platform: Platform) -> None:
    victim, victim_device = _device(platform)
    attacker, attacker_device = _device(platform)
    try:
        # the attacker relays a genuine reading of the victim on the attacker's own topic
        genuine = eth_account_reading(victim, 1, platform.domain)
        status, body = attacker_device.request(genuine)
        assert (status, body["type"], body["field"]) == (403, "/problems/topic-mismatch", "device")
        # and in a batch, only the foreign reading is refused
        own = eth_account_reading(attacker, 1, platform.domain)
        status, body = attacker_device.request({"readings": [own, genuine]})
        assert status == 200
        assert [r["status"] for r in body["results"]] == ["stored", "rejected"]
        assert body["results"][1]["error"]["type"] == "/problems/topic-mismatch"
        assert platform.serve.stored(platform.reader, victim.address) == []
        # on its own topic the victim's reading is fine
        assert victim_device.request(genuine)[0] == 201
    finally:
        victim_device.close()
        attacker_device.close()


def test_a_device_publishing_past_its_rate_limit_gets_429_receipts(platform: Platform) -> None:
    """The per-device limit counts every message, as HTTP counts every request, although the
    bridge commits messages that arrive together in one group (it counted a group once, so a
    device publishing without waiting got through many times its limit). Refused messages are
    not stored and their receipts say when to come back."""
    account, device = _device(platform)
    try:
        sent = [
            device.publish(eth_account_reading(account, seq, platform.domain))
            for seq in range(1, DEVICE_BURST + 11)
        ]
        answers = [device.wait(c) for c in sent]
        statuses = [status for status, _ in answers]
        assert statuses.count(201) == DEVICE_BURST, statuses
        assert statuses.count(429) == 10, statuses
        for correlation, (status, body) in zip(sent, answers, strict=True):
            if status == 429:
                assert body["type"] == "/problems/rate-limited"
                assert int(device.user_properties[correlation]["retry-after"]) >= 1
        stored = platform.serve.stored(platform.reader, account.address)
        assert len(stored) == DEVICE_BURST
        receipted = {body["seq"] for status, body in answers if status == 201}
        assert {r["seq"] for r in stored} == receipted
    finally:
        device.close()


def test_a_response_topic_outside_the_devices_receipts_tree_is_not_used(
    platform: Platform,
) -> None:
    account, device = _device(platform)
    try:
        device.response_topic = "chainsense/v1/devices/" + "0x" + "11" * 20 + "/receipts"
        device.client.subscribe(f"chainsense/v1/devices/{device.address}/receipts", qos=1)
        status, body = device.request(eth_account_reading(account, 1, platform.domain))
        assert status == 201, body  # it came on the device's default receipts topic instead
    finally:
        device.close()


@pytest.mark.timeout(300)
def test_cli_device_send_over_mqtt(platform: Platform, tmp_path: Path) -> None:
    broker, serve, operator, reader = (
        platform.broker,
        platform.serve,
        platform.operator,
        platform.reader,
    )
    key = DeviceKey.generate()
    keystore = tmp_path / "dev.json"
    key.save(keystore, "pw")
    serve.register(operator, key.address)
    probe = PahoDevice(broker.port, key.address)
    wait_bridged(probe)
    probe.close()
    env = serve.env() | {"CHAINSENSE_DEVICE_PASSPHRASE": "pw"}
    done = subprocess.run(
        [sys.executable, "-m", "chainsense", "device", "send", "--keystore", str(keystore),
         "--schema", "chainsense.coldchain.v1", "--value", "temperature=4.15",
         "--value", "humidity=62", "--count", "2", "--interval", "0",
         "--api", serve.url, "--mqtt", broker.url],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "delivered: 1 stored" in done.stdout
    assert [r["seq"] for r in serve.stored(reader, key.address)] == [1, 2]
