"""Which MQTT client should the bridge use? Both candidates, subscribing with MANUAL
acknowledgement (PUBACK sent only when the application says so), on the same broker, same load.

    .venv/bin/python bench/mqtt_clients.py [--messages 20000] [--inflight 100]

A private Mosquitto (unbounded queue) runs on a free port. A publisher in its own process
(paho, QoS 1, ~240-byte payloads) fills a topic; the subscriber
under test, in this process, hands every message to an asyncio task (the bridge's shape: the
commit is awaited on the event loop), and acknowledges it from there:

- gmqtt with ``optimistic_acknowledgement=False``: the PUBACK goes when the async ``on_message``
  returns (its return value is the MQTT 5 reason code);
- paho-mqtt 2 with ``manual_ack=True``: ``on_message`` runs on paho's network thread, the message
  is passed to the loop with ``call_soon_threadsafe``, and ``client.ack(mid, qos)`` is called from
  the loop (paho's ``ack`` takes no reason code).

Both connect with the same Receive Maximum (``--inflight``), so the broker never has more than that
many unacknowledged messages out to the subscriber. Printed: messages acknowledged per second,
from the first message received to the last one acknowledged, the best of 2 runs each, and the
ratio gmqtt / paho. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence

PAYLOAD = (
    b'{"device":"0x'
    + b"ab" * 20
    + b'","seq":1,"timestamp":1763700000000,"schema":"0x'
    + (b"cd" * 32)
    + b'","values":[415,620],"signature":"0x'
    + b"ef" * 32
    + b'"}'
)

_PUBLISHER = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, topic, count, payload = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(1000)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port)
c.loop_start()
infos = [c.publish(topic, payload, qos=1) for _ in range(count)]
for info in infos:
    info.wait_for_publish(60)
c.disconnect(); c.loop_stop()
"""


def _publish(port: int, topic: str, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER, str(port), topic, str(count), PAYLOAD.decode()]
    )


async def _gmqtt(port: int, count: int, inflight: int) -> float:
    import gmqtt  # type: ignore[import-untyped]

    topic = f"bench/{uuid.uuid4().hex}"
    done = asyncio.Event()
    seen = 0
    first = 0.0
    last = 0.0

    async def on_message(
        client: gmqtt.Client, t: str, payload: bytes, qos: int, props: object
    ) -> int:
        nonlocal seen, first, last
        if seen == 0:
            first = time.perf_counter()
        await asyncio.sleep(0)  # the commit, awaited on the loop
        seen += 1
        if seen == count:
            last = time.perf_counter()
            done.set()
        return 0

    client = gmqtt.Client(
        f"bench-{uuid.uuid4().hex[:8]}", optimistic_acknowledgement=False, receive_maximum=inflight
    )
    client.on_message = on_message
    await client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    await asyncio.sleep(0.3)
    publisher = _publish(port, topic, count)
    await asyncio.wait_for(done.wait(), 120)
    await asyncio.to_thread(publisher.wait, 60)
    await client.disconnect()
    return count / (last - first)


async def _paho(port: int, count: int, inflight: int) -> float:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    loop = asyncio.get_running_loop()
    topic = f"bench/{uuid.uuid4().hex}"
    done = asyncio.Event()
    seen = 0
    first = 0.0
    last = 0.0
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )

    async def handle(mid: int) -> None:
        nonlocal seen, first, last
        if seen == 0:
            first = time.perf_counter()
        await asyncio.sleep(0)
        client.ack(mid, 1)
        seen += 1
        if seen == count:
            last = time.perf_counter()
            done.set()

    def on_message(c: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        loop.call_soon_threadsafe(lambda: loop.create_task(handle(msg.mid)))

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = inflight
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port, properties=props)
    client.loop_start()
    client.subscribe(topic, qos=1)
    await asyncio.to_thread(subscribed.wait, 10)
    publisher = _publish(port, topic, count)
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        raise RuntimeError(f"paho: {seen} of {count} acknowledged") from None
    await asyncio.to_thread(publisher.wait, 60)
    client.disconnect()
    client.loop_stop()
    return count / (last - first)


def _broker(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    """A private Mosquitto on a free port whose queue holds the whole run (the default 1,000
    per client would drop messages while a subscriber lags, and the run would never end)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
        )
    proc = subprocess.Popen(["mosquitto", "-c", conf], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        broker, port = _broker(workdir)
        try:
            for name, run in (("gmqtt", _gmqtt), ("paho", _paho)):
                best = max(asyncio.run(run(port, args.messages, args.inflight)) for _ in range(2))
                rates[name] = best
                print(f"{name:6} manual ack, receive maximum {args.inflight}: {best:8.0f} msg/s")
        finally:
            broker.terminate()
            broker.wait(10)
    print(f"ratio gmqtt / paho: {rates['gmqtt'] / rates['paho']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
