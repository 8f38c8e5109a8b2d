"""Webhook delivery of anomaly events: a POST of JSON per event, retried with backoff.

Events wait in a bounded queue (publishing never blocks the AI worker); one task delivers them in
order. A 2xx answer is a delivery; any other answer or a transport error is retried
``retries`` times, waiting ``backoff``, 2x``backoff``, ... in between; then the event is given
up and counted (it stays in the database and in ``/v1/anomalies``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from chainsense.redact import redact_url, scrub, url_secrets
from chainsense.store import StoredAnomaly

__all__ = ["WebhookSender", "event_json"]

log = logging.getLogger(__name__)


def event_json(e: StoredAnomaly) -> dict[str, Any]:
    """The public JSON of an anomaly event (the API's AnomalyPublic has the same fields)."""
    return {
        "id": e.id,
        "reading_id": e.reading_id,
        "device": e.device,
        "schema": "0x" + e.schema.hex(),
        "metric": e.metric,
        "timestamp": e.timestamp,
        "value": e.value,
        "score": e.score,
        "expected": e.expected,
        "low": e.low,
        "high": e.high,
        "check": e.check,
        "detector": e.detector,
        "explanation": (
            f"{e.metric} = {e.value:g}, expected {e.low:.4g} to {e.high:.4g} ({e.check})"
        ),
        "proof": f"/v1/readings/{e.reading_id}/proof",
        "created_at": e.created_at.isoformat(),
    }


class WebhookSender:
    def __init__(
        self,
        url: str,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 10.0,
        queue: int = 10_000,
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.queue: asyncio.Queue[StoredAnomaly] = asyncio.Queue(queue)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ai-webhook")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, event: StoredAnomaly) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            while True:
                event = await self.queue.get()
                await self._deliver(http, event_json(event))

    async def _deliver(self, http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = await http.post(self.url, json=body)
                if response.is_success:
                    self.delivered += 1
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1
        log.warning(
            "webhook %s gave up on anomaly %s: %s",
            redact_url(self.url),
            body["id"],
            scrub(reason, url_secrets(self.url)),
        )
