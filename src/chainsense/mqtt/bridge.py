"""The MQTT 5 bridge: device readings from a broker into the ingest pipeline, receipts back.

One bridge per platform process. It joins the shared subscription
``$share/chainsense/chainsense/v1/devices/+/readings`` (QoS 1) with a persistent session, so
several processes split the messages and a process that dies finds its unacknowledged messages
waiting when it comes back. For each message, in this order:

1. the body is split with :func:`~chainsense.telemetry.ingest.parse_body` (the HTTP path's rules);
   a reading whose ``device`` is not the topic's address is refused (403 ``topic-mismatch``);
2. the readings go through :meth:`IngestPipeline.ingest` (messages that arrive together are
   grouped into one call, so one durable commit serves many messages);
3. after the commit, the receipt, exactly the HTTP acknowledgement body
   (:func:`~chainsense.telemetry.acks.acknowledgement`), is published QoS 1 on the message's
   Response Topic (honoured inside the device's own receipts tree only) or on
   ``chainsense/v1/devices/{address}/receipts``, with the Correlation Data echoed and the HTTP
   status as the user property ``status``;
4. only then is the broker's delivery acknowledged (PUBACK; gmqtt with
   ``optimistic_acknowledgement=False`` sends it when the handler returns), with an MQTT 5
   reason code when the whole message was refused: 0x87 not authorized (another device's topic),
   0x97 quota exceeded (too large, or the device is over its rate limit: counted once per
   message, as HTTP counts a request), 0x99 payload format invalid, 0x90 topic name invalid.

A ``kill -9`` before step 4 leaves the message unacknowledged at the broker, which sends it again
when the process reconnects; the store's seq check makes a reading stored before the kill an
idempotent ``duplicate``. The broker never has more than ``receive_maximum`` messages in flight
to the bridge, so a slow commit holds the rest at the broker (its queue) instead of in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import random
import re
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainsense.mqtt.topics import PREFIX, receipts_topic, response_topic_allowed, shared_filter
from chainsense.mqtt.url import BrokerUrl
from chainsense.strictjson import quote
from chainsense.telemetry.acks import acknowledgement, refusal
from chainsense.telemetry.ingest import BodyError, IngestResult, Rejection, parse_body

__all__ = ["MqttBridge", "Receipt"]

log = logging.getLogger(__name__)

Ingest = Callable[[Sequence[Any], Sequence[int]], Awaitable[list[IngestResult]]]
"""``ingest(items, origins)``: ``origins[i]`` numbers the message item ``i`` came in, so the
per-device rate limit counts each message once, as HTTP counts each request."""

SUCCESS = 0x00
UNSPECIFIED_ERROR = 0x80
NOT_AUTHORIZED = 0x87
TOPIC_NAME_INVALID = 0x90
QUOTA_EXCEEDED = 0x97
PAYLOAD_FORMAT_INVALID = 0x99

_ADDRESS = re.compile(r"^0[xX][0-9a-fA-F]{40}$")
_SEGMENT = re.compile(r"^chainsense/v1/devices/([^/]+)/readings$")
_VALID_SEGMENT = re.compile(r"^0x[0-9a-f]{40}$")
_NO_RECONNECT = -2  # gmqtt reconnects by itself unless retries < failures; the bridge does it


@dataclass(frozen=True)
class Receipt:
    """What the bridge answers to one message."""

    status: int
    """The HTTP status the same body would have had."""
    body: dict[str, Any]
    """The HTTP acknowledgement body (BatchAck, ReadingAck, or a problem)."""
    reason_code: int
    """MQTT 5 PUBACK reason code for the broker's delivery."""
    results: tuple[IngestResult, ...] = ()


class _Grouper:
    """Feeds concurrent messages' readings to ``ingest`` together: one call (one durable commit)
    for what arrived while the previous call ran, at most ``max_items`` readings, in arrival
    order (so one device's readings keep their order)."""

    def __init__(self, ingest: Ingest, max_items: int) -> None:
        self._ingest = ingest
        self._max_items = max_items
        self._jobs: deque[tuple[Sequence[Any], asyncio.Future[list[IngestResult]]]] = deque()
        self._wake = asyncio.Event()

    async def submit(self, items: Sequence[Any]) -> list[IngestResult]:
        future: asyncio.Future[list[IngestResult]] = asyncio.get_running_loop().create_future()
        self._jobs.append((items, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                group = [self._jobs.popleft()]
                size = len(group[0][0])
                while self._jobs and size + len(self._jobs[0][0]) <= self._max_items:
                    group.append(self._jobs.popleft())
                    size += len(group[-1][0])
                await self._commit(group)

    async def _commit(
        self, group: list[tuple[Sequence[Any], asyncio.Future[list[IngestResult]]]]
    ) -> None:
        items = [item for job_items, _ in group for item in job_items]
        origins = [n for n, (job_items, _) in enumerate(group) for _ in job_items]
        try:
            results = await self._ingest(items, origins)
        except Exception as exc:  # the store is down: every message of the group gets a 503
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        offset = 0
        for job_items, future in group:
            mine = results[offset : offset + len(job_items)]
            if not future.done():
                future.set_result([dataclasses.replace(r, index=r.index - offset) for r in mine])
            offset += len(job_items)


class MqttBridge:
    """Bridges one broker into one ingest pipeline; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        ingest: Ingest,
        url: BrokerUrl,
        client_id: str,
        max_batch: int = 1000,
        max_body_bytes: int = 4 * 1024 * 1024,
        receive_maximum: int = 1000,
        session_expiry: int = 86_400,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        leave_on_stop: bool = False,
        on_results: Callable[[Sequence[IngestResult]], None] | None = None,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.receive_maximum = receive_maximum
        self.session_expiry = session_expiry
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.leave_on_stop = leave_on_stop
        # The readings are counted in chainsense_readings_ingested_total{transport="mqtt"} by
        # the ingest pipeline (platform.py passes transport="mqtt"); ``counts`` is this bridge's.
        self.on_results = on_results
        self.counts: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self._grouper = _Grouper(ingest, max_batch)
        self._busy: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- one message, transport aside ------------------------------------------------------

    async def handle(self, topic: str, payload: bytes) -> Receipt:
        """Check and store one message's readings; return its receipt. Returns only after the
        durable commit."""
        match = _SEGMENT.match(topic)
        address = match.group(1) if match else ""
        if not _VALID_SEGMENT.match(address):
            return _refused(
                Rejection(
                    422,
                    "invalid-topic",
                    "Invalid topic",
                    f"publish to {PREFIX}/<address>/readings with the device address in "
                    f"lowercase hex with the 0x prefix, not {quote(topic)}",
                ),
                TOPIC_NAME_INVALID,
            )
        if len(payload) > self.max_body_bytes:
            too_large = Rejection(
                413, "body-too-large", "Body too large", f"the limit is {self.max_body_bytes} bytes"
            )
            return _refused(too_large, QUOTA_EXCEEDED)
        try:
            items, is_batch = parse_body(payload, max_batch=self.max_batch)
        except BodyError as exc:
            code = QUOTA_EXCEEDED if exc.rejection.status == 413 else PAYLOAD_FORMAT_INVALID
            return _refused(exc.rejection, code)
        foreign = {i: item for i, item in enumerate(items) if _foreign(item, address)}
        mine = [item for i, item in enumerate(items) if i not in foreign]
        stored = await self._grouper.submit(mine) if mine else []
        results: list[IngestResult] = []
        done = iter(stored)
        for i, item in enumerate(items):
            if i in foreign:
                results.append(_mismatch(i, item, address))
            else:
                results.append(dataclasses.replace(next(done), index=i))
        self.counts.update(r.status for r in results)
        if self.on_results is not None:
            self.on_results(results)
        status, body = acknowledgement(results, batch=is_batch)
        if len(foreign) == len(items):
            reason = NOT_AUTHORIZED
        elif all(r.error is not None and r.error.status == 429 for r in results):
            reason = QUOTA_EXCEEDED
        else:
            reason = SUCCESS
        return Receipt(status, body, reason, tuple(results))

    # --- the broker --------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, bridge; reconnect with exponential backoff (with jitter) when the
        broker goes away. On cancellation, see :meth:`_close`."""
        grouper = asyncio.create_task(self._grouper.run(), name="mqtt-group-commit")
        delay = self.backoff
        try:
            while True:
                try:
                    if await self._session():
                        delay = self.backoff
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # refused, unreachable, protocol error: retry
                    log.warning(
                        "mqtt: broker %s unavailable (%s); retrying in %.1f s",
                        self.url.redacted,
                        exc or type(exc).__name__,
                        delay,
                    )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(self.max_backoff, delay * 2)
        finally:
            grouper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await grouper

    async def _session(self) -> bool:
        """One connection: returns when it is lost (True if it was established)."""
        import gmqtt  # type: ignore[import-untyped]

        client = gmqtt.Client(
            self.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            logger=_GMQTT_LOG,
            receive_maximum=self.receive_maximum,
            session_expiry_interval=self.session_expiry,
        )
        client.set_config({"reconnect_retries": _NO_RECONNECT})
        lost = asyncio.Event()
        client.on_disconnect = lambda *_: lost.set()
        client.on_message = self._on_message
        if self.url.username is not None:
            client.set_auth_credentials(self.url.username, self.url.password)
        await client.connect(self.url.host, self.url.port, ssl=self.url.tls, keepalive=30)
        try:
            client.subscribe(shared_filter(), qos=1)
            self.connected.set()
            log.info("mqtt: bridging %s as %s", self.url.redacted, self.client_id)
            await lost.wait()
            log.warning("mqtt: connection to %s lost", self.url.redacted)
            return True
        except asyncio.CancelledError:
            await self._close(client)
            raise
        finally:
            self.connected.clear()

    async def _close(self, client: Any) -> None:
        """Let the messages already received finish (bounded: 10 s), then disconnect.

        By default the session is kept: the broker queues this process's share of new messages
        for it while it is down, as after a ``kill -9``, and nothing is lost even for a device
        that never resends. With ``leave_on_stop`` (several processes share the subscription and
        this one may stay down), it first leaves the shared subscription, so the broker gives
        new messages to the other processes, and ends its session once drained; a message
        nobody subscribes to is then dropped by the broker, and only devices that resend what
        was not receipted (the protocol) still get it stored. If a commit does not finish in
        time, the session is kept either way, so what was not acknowledged is redelivered."""
        if self.leave_on_stop:
            unsubscribed = asyncio.Event()
            client.on_unsubscribe = lambda *_: unsubscribed.set()
            with contextlib.suppress(Exception):
                client.unsubscribe(shared_filter())
                await asyncio.wait_for(unsubscribed.wait(), 5)
        drained = True
        try:
            await asyncio.wait_for(self._idle.wait(), 10)
        except TimeoutError:
            drained = False
        with contextlib.suppress(Exception):
            if drained and self.leave_on_stop:
                await client.disconnect(session_expiry_interval=0)
            else:
                await client.disconnect()

    async def _on_message(
        self, client: Any, topic: str, payload: bytes, qos: int, properties: Mapping[str, Any]
    ) -> int:
        task = asyncio.current_task()
        assert task is not None
        self._busy.add(task)
        self._idle.clear()
        try:
            try:
                receipt = await self.handle(topic, payload)
            except Exception as exc:
                log.error("mqtt: ingest failed, device must retry: %s", exc, exc_info=exc)
                receipt = _refused(
                    Rejection(
                        503,
                        "ingest-unavailable",
                        "Ingest unavailable",
                        "the reading could not be stored now; nothing was stored: send it again",
                    ),
                    UNSPECIFIED_ERROR,
                )
            self._publish_receipt(client, topic, properties, receipt)
            return receipt.reason_code
        finally:
            self._busy.discard(task)
            if not self._busy:
                self._idle.set()

    def _publish_receipt(
        self, client: Any, topic: str, properties: Mapping[str, Any], receipt: Receipt
    ) -> None:
        segment = topic.split("/")[3] if topic.count("/") == 4 else ""
        target = receipts_topic(segment) if _VALID_SEGMENT.match(segment) else None
        response = _first(properties, "response_topic")
        if isinstance(response, bytes):
            response = response.decode("utf-8", "replace")
        if isinstance(response, str) and response_topic_allowed(response, segment):
            target = response
        if target is None:
            log.warning("mqtt: no receipt topic for a message on %r", topic)
            return
        properties_out = [("status", str(receipt.status))]
        if receipt.status == 429 and receipt.results and receipt.results[0].error is not None:
            wait = receipt.results[0].error.retry_after
            if wait is not None:  # what HTTP says in its Retry-After header
                properties_out.append(("retry-after", str(math.ceil(wait))))
        extra: dict[str, Any] = {
            "content_type": "application/json",
            "user_property": properties_out,
        }
        correlation = _first(properties, "correlation_data")
        if correlation is not None:
            extra["correlation_data"] = correlation
        body = json.dumps(receipt.body, separators=(",", ":"))
        try:
            client.publish(target, body, qos=1, **extra)
        except Exception as exc:  # connection gone: no PUBACK either, so it is redelivered
            log.warning("mqtt: receipt not sent (%s)", exc)
            raise


def _first(properties: Mapping[str, Any], name: str) -> Any:
    value = properties.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _refused(rejection: Rejection, reason_code: int) -> Receipt:
    status, body = refusal(rejection)
    return Receipt(status, body, reason_code)


def _foreign(item: Any, address: str) -> bool:
    """A well-formed device address that is not the topic's (ill-formed ones are left to the
    pipeline, which names the field as the HTTP path does)."""
    if not isinstance(item, Mapping):
        return False
    device = item.get("device")
    return isinstance(device, str) and bool(_ADDRESS.match(device)) and device.lower() != address


def _mismatch(index: int, item: Mapping[str, Any], address: str) -> IngestResult:
    seq = item.get("seq")
    return IngestResult(
        index,
        "rejected",
        device=str(item["device"]),
        seq=seq if type(seq) is int else None,
        error=Rejection(
            403,
            "topic-mismatch",
            "Reading published on another device's topic",
            f"a reading of {item['device']} was published on the topic of {address}; each "
            f"device publishes on {PREFIX}/<its own address>/readings",
            "device",
        ),
    )


class _QuietFilter(logging.Filter):
    """gmqtt logs an error when it declines to reconnect by itself: the bridge reconnects."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "max number of failed connection attempts" not in record.getMessage()


_GMQTT_LOG = logging.getLogger("chainsense.mqtt.gmqtt")
_GMQTT_LOG.addFilter(_QuietFilter())
