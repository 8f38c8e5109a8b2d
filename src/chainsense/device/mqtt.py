"""Delivering buffered readings over MQTT 5, settled by the platform's receipts (docs/mqtt.md).

:meth:`MqttUplink.flush` publishes the buffer's unacknowledged readings, oldest first, as
``{"readings": [...]}`` on ``chainsense/v1/devices/{address}/readings`` (QoS 1) with a Response
Topic under the device's receipts topic and a fresh Correlation Data, **one message in flight at a
time**, and waits for the receipt (the HTTP acknowledgement body). Each reading is then settled as
:class:`~chainsense.device.uplink.Uplink` settles an HTTP answer: ``stored``/``duplicate`` leave
the buffer, a 4xx refusal moves to the rejected table, anything else stays. No receipt in time
(platform or broker down, connection lost): the same readings are published again, after
reconnecting if need be, so a reading leaves the buffer only once the platform has stored it, and
a resent reading that was stored already comes back ``duplicate``: exactly once, in seq order,
across broker restarts and platform crashes. The broker's PUBACK is never taken as delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from chainsense.device.buffer import BufferedReading, OfflineBuffer, RejectedReading
from chainsense.device.uplink import RETRY_STATUSES, FlushReport
from chainsense.mqtt.topics import readings_topic, receipts_topic
from chainsense.mqtt.url import BrokerUrl

__all__ = ["MqttUplink"]

log = logging.getLogger(__name__)

_NO_RECONNECT = -2  # the uplink reconnects itself, on the next flush


class MqttUplink:
    """Sends one device's buffer to the platform through an MQTT 5 broker. Use as ``async
    with``, or call :meth:`aclose`.

    ``url`` is ``mqtt[s]://user:password@host:port``; ``address`` the device's address (default:
    the buffer's). A message waits ``receipt_timeout`` seconds for its receipt, and is published
    up to ``1 + retries`` times per flush before the flush gives up (the readings stay buffered).
    """

    def __init__(
        self,
        url: str | BrokerUrl,
        buffer: OfflineBuffer,
        *,
        address: str | None = None,
        batch_size: int = 100,
        receipt_timeout: float = 10.0,
        retries: int = 2,
        connect_timeout: float = 10.0,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be in [1, 1000] (the platform takes at most 1000)")
        self.url = url if isinstance(url, BrokerUrl) else BrokerUrl.parse(url)
        self.buffer = buffer
        self._address = address
        self.batch_size = batch_size
        self.receipt_timeout = receipt_timeout
        self.retries = retries
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._lost = asyncio.Event()
        self._waiting: dict[bytes, asyncio.Future[tuple[int, Any]]] = {}
        self._lock = asyncio.Lock()
        self._response_topic = ""

    async def __aenter__(self) -> MqttUplink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Disconnect (the buffer stays open: it is yours)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()

    @property
    def address(self) -> str:
        address = self._address or self.buffer.device
        if address is None:
            raise ValueError("the buffer has no device yet: pass address=")
        return address.lower()

    # --- the connection ------------------------------------------------------------------------

    async def _connect(self) -> Any:
        if self._client is not None and not self._lost.is_set():
            return self._client
        await self.aclose()
        import gmqtt  # type: ignore[import-untyped]

        client = gmqtt.Client(f"cs-{self.address[2:12]}-{uuid.uuid4().hex[:8]}")
        client.set_config({"reconnect_retries": _NO_RECONNECT})
        self._lost = asyncio.Event()
        lost = self._lost
        client.on_disconnect = lambda *_: lost.set()
        client.on_message = self._on_message
        if self.url.username is not None:
            client.set_auth_credentials(self.url.username, self.url.password)
        await asyncio.wait_for(
            client.connect(self.url.host, self.url.port, ssl=self.url.tls, keepalive=30),
            self.connect_timeout,
        )
        self._response_topic = f"{receipts_topic(self.address)}/{uuid.uuid4().hex[:12]}"
        subscribed = asyncio.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.subscribe(self._response_topic, qos=1)
        await asyncio.wait_for(subscribed.wait(), self.connect_timeout)
        self._client = client
        return client

    def _on_message(
        self, client: Any, topic: str, payload: bytes, qos: int, properties: Mapping[str, Any]
    ) -> int:
        correlation = properties.get("correlation_data")
        if isinstance(correlation, list):
            correlation = correlation[0] if correlation else None
        future = self._waiting.get(correlation) if isinstance(correlation, bytes) else None
        if future is not None and not future.done():
            status = dict(properties.get("user_property") or []).get("status", "0")
            try:
                future.set_result((int(status), json.loads(payload)))
            except ValueError as exc:
                future.set_exception(exc)
        return 0

    # --- flushing --------------------------------------------------------------------------------

    async def flush(self) -> FlushReport:
        """Deliver buffered readings in seq order until the buffer is empty, the platform refuses
        to take more now, or no receipt comes (after the retries)."""
        async with self._lock:
            stored = duplicates = 0
            rejected: list[RejectedReading] = []
            error: str | None = None
            unreachable = False
            try:
                while True:
                    batch = await asyncio.to_thread(self.buffer.pending, self.batch_size)
                    if not batch:
                        break
                    results = await self._deliver(batch)
                    s, d, r, transient = await self._settle(batch, results)
                    stored, duplicates = stored + s, duplicates + d
                    rejected.extend(r)
                    if transient:
                        error = f"the platform could not take seq {transient} now; kept"
                        break
            except (OSError, TimeoutError, _NoReceipt) as exc:
                error, unreachable = str(exc) or type(exc).__name__, True
            return FlushReport(
                stored=stored,
                duplicates=duplicates,
                rejected=tuple(rejected),
                pending=await asyncio.to_thread(self.buffer.pending_count),
                error=error,
                unreachable=unreachable,
            )

    async def _deliver(self, batch: Sequence[BufferedReading]) -> list[Mapping[str, Any]]:
        """Publish ``batch`` until a receipt comes; the results, one per reading, in order."""
        payload = json.dumps({"readings": [entry.to_json() for entry in batch]})
        last: Exception | None = None
        for _ in range(1 + self.retries):
            try:
                client = await self._connect()
            except Exception as exc:  # refused, unreachable: try again, then give up
                last = exc
                await self.aclose()
                await asyncio.sleep(min(1.0, self.receipt_timeout))
                continue
            correlation = uuid.uuid4().bytes
            future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
            self._waiting[correlation] = future
            try:
                client.publish(
                    readings_topic(self.address),
                    payload,
                    qos=1,
                    response_topic=self._response_topic,
                    correlation_data=correlation,
                    content_type="application/json",
                )
                lost = asyncio.ensure_future(self._lost.wait())
                waiters: set[asyncio.Future[Any]] = {future, lost}
                try:
                    await asyncio.wait(
                        waiters,
                        timeout=self.receipt_timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    lost.cancel()
                if future.done():
                    status, body = future.result()
                    return _results(status, body, batch)
                last = _NoReceipt(f"no receipt within {self.receipt_timeout} s")
            except (ValueError, KeyError, TypeError) as exc:
                raise _NoReceipt(f"unexpected receipt ({exc})") from None
            finally:
                self._waiting.pop(correlation, None)
        raise _NoReceipt(
            f"{self.url.redacted}: {last}; {len(batch)} readings kept to be sent again"
        )

    async def _settle(
        self, batch: Sequence[BufferedReading], results: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int, list[RejectedReading], int | None]:
        stored = duplicates = 0
        acknowledged: list[int] = []
        refused: list[tuple[int, int, Mapping[str, Any]]] = []
        rejected: list[RejectedReading] = []
        transient: int | None = None
        for entry, result in zip(batch, results, strict=True):
            status = result.get("status")
            if status in ("stored", "duplicate"):
                stored += status == "stored"
                duplicates += status == "duplicate"
                acknowledged.append(entry.seq)
                continue
            error = result.get("error")
            problem: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
            code = problem.get("status")
            code = code if type(code) is int else 422
            if status == "rejected" and 400 <= code < 500 and code not in RETRY_STATUSES:
                refused.append((entry.seq, code, problem))
                rejected.append(RejectedReading(entry, code, problem, time.time()))
            elif transient is None:
                transient = entry.seq
        await asyncio.to_thread(self.buffer.settle, acknowledged=acknowledged, rejected=refused)
        return stored, duplicates, rejected, transient


class _NoReceipt(Exception):
    pass


def _results(status: int, body: Any, batch: Sequence[BufferedReading]) -> list[Mapping[str, Any]]:
    """One result per reading from a receipt: a BatchAck, or a problem for the whole message."""
    if isinstance(body, Mapping) and isinstance(body.get("results"), list):
        by_index = {int(r["index"]): r for r in body["results"]}
        ordered = [by_index[i] for i in range(len(batch))]
        for entry, result in zip(batch, ordered, strict=True):
            if result.get("seq") not in (None, entry.seq):
                raise ValueError(f"the result for seq {entry.seq} names {result['seq']}")
        return ordered
    if isinstance(body, Mapping) and status >= 400:
        problem = {**body, "status": body.get("status", status)}
        return [{"status": "rejected", "error": problem} for _ in batch]
    raise ValueError(f"status {status}, body {body!r}")
