"""Live anomaly events and alarm changes for every process of a platform (``serve --workers``).

The AI worker runs in one process (the AI role's leader), an operator's ack or clear in whichever
process took the request, and a console's live stream (``GET /v1/stream``) is held open by any
of them: each process used to hand its events only to its own subscribers, so a stream held
by another worker got nothing. On PostgreSQL the events now go through ``NOTIFY``: the process
that makes them sends them (:func:`encode`) on one channel after they are committed, and every
process, the sender included, ``LISTEN``s on a connection of its own and
hands them to its subscribers, in the order they were sent: an anomaly event read again by
its id (the row never changes), an alarm as it was when sent (its row changes: acknowledged,
cleared). On SQLite (one process) :class:`LocalBus` hands them over directly.

What is lost when a process's listening connection drops (until it is back, with backoff) is
what a slow subscriber already loses: live frames. Stored anomaly events are replayed with
``Last-Event-ID``; alarms are read from ``/v1/alarms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from chainsense.store import Alarm, Store, StoredAnomaly

__all__ = ["CHANNEL", "LiveBus", "LocalBus", "PgLiveBus", "decode", "encode"]

log = logging.getLogger(__name__)

CHANNEL = "chainsense_live"
#: PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more; ids are cut into payloads below.
_MAX_PAYLOAD = 7_000

Deliver = Callable[[StoredAnomaly | Alarm], Awaitable[None]]


class LiveBus(Protocol):
    async def send(self, anomalies: Sequence[StoredAnomaly], alarms: Sequence[Alarm]) -> None:
        """Hand these committed rows to every process's subscribers."""
        ...


class LocalBus:
    """One process: straight to its subscribers."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def send(self, anomalies: Sequence[StoredAnomaly], alarms: Sequence[Alarm]) -> None:
        for anomaly in anomalies:
            await self._deliver(anomaly)
        for alarm in alarms:
            await self._deliver(alarm)


def encode(anomaly_ids: Sequence[int], alarms: Sequence[Alarm]) -> list[str]:
    """Payloads of at most ``_MAX_PAYLOAD`` bytes, in order: ``a1,2,3`` (anomaly ids: the rows
    never change, so they are read again where delivered) then one ``l{...}`` per alarm with
    the alarm itself (its state when it was sent: an alarm row changes; ``i<id>`` to read it
    again should one ever be too long)."""
    payloads: list[str] = []
    current = ""
    for i in anomaly_ids:
        item = str(i)
        if current and len(current) + 1 + len(item) > _MAX_PAYLOAD:
            payloads.append(current)
            current = ""
        current = f"{current},{item}" if current else f"a{item}"
    if current:
        payloads.append(current)
    for alarm in alarms:
        body = "l" + json.dumps(
            dataclasses.asdict(alarm) | {"schema": alarm.schema.hex()}, separators=(",", ":")
        )
        payloads.append(body if len(body.encode()) <= _MAX_PAYLOAD else f"i{alarm.id}")
    return payloads


def decode(payload: str) -> tuple[str, list[int] | Alarm]:
    """``("a", anomaly ids)``, ``("l", the alarm)`` or ``("i", alarm ids to read)``; ValueError
    for anything else."""
    tag, body = payload[:1], payload[1:]
    if tag in ("a", "i") and body:
        return tag, [int(x) for x in body.split(",")]
    if tag == "l" and body:
        fields = json.loads(body)
        if not isinstance(fields, dict):
            raise ValueError("an alarm payload is a JSON object")
        fields["schema"] = bytes.fromhex(fields["schema"])
        return tag, Alarm(**fields)
    raise ValueError(f"not a live-bus payload: {payload[:40]!r}")


class PgLiveBus:
    """``NOTIFY``/``LISTEN`` on PostgreSQL; :meth:`run` keeps the listening connection."""

    def __init__(self, dsn: str, store: Store, deliver: Deliver, *, retry_s: float = 1.0) -> None:
        self.dsn = dsn
        self.store = store
        self._deliver = deliver
        self.retry_s = retry_s
        self._received: asyncio.Queue[str] = asyncio.Queue()
        self.listening = asyncio.Event()

    async def send(self, anomalies: Sequence[StoredAnomaly], alarms: Sequence[Alarm]) -> None:
        payloads = encode([e.id for e in anomalies], alarms)
        if payloads:  # through the store's pool; delivered when this transaction commits
            await self.store.notify(CHANNEL, payloads)

    async def run(self) -> None:
        """Listen (reconnecting with backoff) and deliver what arrives, until cancelled."""
        deliverer = asyncio.create_task(self._deliver_received(), name="live-bus-deliver")
        try:
            while True:
                try:
                    await self._listen()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database went away: live frames wait for it
                    log.warning("live events: listening connection lost (%s); retrying", exc)
                self.listening.clear()
                await asyncio.sleep(self.retry_s)
        finally:
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliverer

    async def _listen(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.dsn, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda *_: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            self.listening.set()
            await lost.wait()
            raise ConnectionError("the server closed it")
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._received.put_nowait(payload)

    async def _deliver_received(self) -> None:
        while True:
            payload = await self._received.get()
            try:
                tag, data = decode(payload)
                if isinstance(data, Alarm):
                    await self._deliver(data)
                    continue
                for row_id in data:
                    row: StoredAnomaly | Alarm | None
                    if tag == "a":
                        row = await self.store.anomalies.get(row_id)
                    else:
                        row = await self.store.alarms.get(row_id)
                    if row is not None:
                        await self._deliver(row)
            except Exception as exc:  # one bad payload or read must not stop the others
                log.warning("live events: %s", exc)
