"""Webhook delivery against a real local HTTP server that fails the first attempts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from chainsense.ai.webhook import WebhookSender
from chainsense.store import StoredAnomaly
from tests.support import free_port


class _Receiver:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []


@pytest.fixture
def receiver() -> Iterator[tuple[str, _Receiver]]:
    state = _Receiver(failures=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.attempts += 1
            if state.attempts <= state.failures:
                self.send_response(503)
            else:
                state.bodies.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", state
    finally:
        server.shutdown()
        server.server_close()


def _event() -> StoredAnomaly:
    return StoredAnomaly(
        reading_id=7, device="0x" + "11" * 20, schema=b"\x01" * 32, metric="temperature",
        timestamp=1000, value=12.5, score=3.0, expected=4.1, low=3.9, high=4.3, check="level",
        detector="sensor_guard", id=1, created_at=datetime.now(UTC),
    )  # fmt: skip


async def test_a_failing_endpoint_gets_the_event_after_retries(
    receiver: tuple[str, _Receiver],
) -> None:
    url, state = receiver
    sender = WebhookSender(url, retries=3, backoff=0.01)
    await sender.start()
    try:
        await sender.publish(_event())
        for _ in range(500):
            if sender.delivered:
                break
            await asyncio.sleep(0.01)
    finally:
        await sender.stop()
    assert sender.delivered == 1
    assert state.attempts == 3
    assert state.bodies[0]["reading_id"] == 7
    assert state.bodies[0]["proof"] == "/v1/readings/7/proof"


async def test_it_gives_up_after_the_retries(receiver: tuple[str, _Receiver]) -> None:
    url, state = receiver
    state.failures = 100
    sender = WebhookSender(url, retries=2, backoff=0.01)
    await sender.start()
    try:
        await sender.publish(_event())
        for _ in range(500):
            if sender.failed:
                break
            await asyncio.sleep(0.01)
    finally:
        await sender.stop()
    assert (sender.failed, sender.delivered, state.attempts) == (1, 0, 3)
