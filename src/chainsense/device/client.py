"""The device client: sign readings into the offline buffer, and deliver them.

:meth:`DeviceClient.record` needs no network once the platform's EIP-712 domain is known (cached
from the first contact, or given): it takes the next seq, stamps the device time, signs, and
stores the reading durably before it returns. :meth:`DeviceClient.flush` delivers the buffer
through an :class:`~chainsense.device.uplink.Uplink` (batches, retries, settling each answer).

>>> import asyncio, tempfile, pathlib
>>> from chainsense.identity import DeviceKey
>>> async def offline_device() -> tuple[int, int]:
...     buffer = OfflineBuffer(pathlib.Path(tempfile.mkdtemp()) / "buffer.sqlite")
...     domain = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
...     async with DeviceClient("http://127.0.0.1:9", DeviceKey.generate(), buffer,
...                             domain=domain, retries=0) as device:
...         reading = await device.record("chainsense.coldchain.v1",
...                                       {"temperature": "4.15", "humidity": 62})
...         report = await device.flush()  # nothing listens on port 9
...     buffer.close()
...     return reading.values, report.pending
>>> asyncio.run(offline_device())
((415, 620), 1)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from chainsense.device.buffer import Domain, OfflineBuffer
from chainsense.device.errors import OfflineBufferError
from chainsense.device.uplink import FlushReport, Uplink
from chainsense.identity import DeviceKey, Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS, Schema, SchemaRegistry, ValueScaleError

if TYPE_CHECKING:
    from chainsense.device.mqtt import MqttUplink

__all__ = ["DeviceClient", "device_time_ms", "fixed_point_values"]

Values = Mapping[str, Decimal | str | int]
"""Named values of one reading: metric name to a decimal number (``Decimal``, ``str`` or
``int``; never ``float``)."""


def device_time_ms() -> int:
    """The device clock: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def fixed_point_values(schema: Schema, values: Values) -> tuple[int, ...]:
    """Named decimal values as the schema's fixed-point integers, in the schema's order.

    Raises :class:`ValueScaleError` naming the metric: unknown or missing names, floats (binary
    fractions are not exact decimals: pass a ``Decimal`` or a string), non-numbers, and values
    with more decimals than the metric's scale.

    >>> cold = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
    >>> fixed_point_values(cold, {"humidity": 62, "temperature": "4.15"})
    (415, 620)
    >>> fixed_point_values(cold, {"temperature": "4.155", "humidity": 62})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chainsense.telemetry.schemas.ValueScaleError: temperature: 4.155 has more decimals than ...
    """
    known = {m.name for m in schema.metrics}
    for name in values:
        if name not in known:
            raise ValueScaleError(
                name, f"not a metric of {schema.name} (it has {_metric_list(schema)})"
            )
    fixed: list[int] = []
    for metric in schema.metrics:
        if metric.name not in values:
            raise ValueScaleError(
                metric.name, f"missing; {schema.name} needs {_metric_list(schema)}"
            )
        value = values[metric.name]
        if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
            kind = type(value).__name__
            hint = " (pass a Decimal or a string: floats are not exact)" if kind == "float" else ""
            raise ValueScaleError(metric.name, f"expected a decimal number, got {kind}{hint}")
        fixed.append(metric.to_fixed(value.strip() if isinstance(value, str) else value))
    return tuple(fixed)


def _metric_list(schema: Schema) -> str:
    return ", ".join(f"{m.name} ({m.unit})" for m in schema.metrics)


class DeviceClient:
    """One device (its key and its buffer) talking to one platform.

    Use as ``async with``, or call :meth:`aclose`. ``base_url`` is the platform's API root
    (``http://127.0.0.1:8000``); ``http`` an ``httpx.AsyncClient`` to use (the caller closes it).
    ``domain`` fixes the EIP-712 domain instead of taking it from the platform on first contact.
    ``clock`` is the device clock in ms. The other keywords tune the :class:`Uplink`.
    ``mqtt`` (``mqtt://user:password@host:port``) delivers over MQTT 5 instead, settled by the
    platform's receipts (:class:`~chainsense.device.mqtt.MqttUplink`); the HTTP API is then used
    only to learn the signing domain on first contact, unless ``domain`` is given.
    """

    def __init__(
        self,
        base_url: str,
        key: DeviceKey,
        buffer: OfflineBuffer,
        *,
        http: httpx.AsyncClient | None = None,
        batch_size: int = 500,
        domain: Domain | None = None,
        schemas: SchemaRegistry = BUILTIN_SCHEMAS,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
        clock: Callable[[], int] = device_time_ms,
        mqtt: str | None = None,
    ) -> None:
        owner = buffer.device
        if owner is not None and owner != key.address:
            raise OfflineBufferError(
                buffer.path, f"belongs to device {owner}, not {key.address}; use another file"
            )
        self.key = key
        self.buffer = buffer
        self.schemas = schemas
        self.uplink = Uplink(
            base_url,
            buffer,
            http=http,
            batch_size=batch_size,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            timeout=timeout,
        )
        self.mqtt: MqttUplink | None = None
        if mqtt is not None:
            from chainsense.device.mqtt import MqttUplink

            self.mqtt = MqttUplink(mqtt, buffer, address=key.address, batch_size=batch_size)
        self._clock = clock
        if domain is not None:
            buffer.set_domain(domain)

    async def __aenter__(self) -> DeviceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if the client made it, and the MQTT connection (the buffer
        stays open: it is yours)."""
        await self.uplink.aclose()
        if self.mqtt is not None:
            await self.mqtt.aclose()

    @property
    def base_url(self) -> str:
        """The platform's API root."""
        return self.uplink.base_url

    async def record(self, schema_name: str, values: Values) -> Reading:
        """Sign a reading of ``values`` with the next seq and the device time, store it durably
        in the buffer, and return it. No network is needed once the domain is known.

        Raises :class:`UnknownSchemaError`, or :class:`ValueScaleError` naming the metric, for
        bad input (no seq is used then), and :class:`PlatformUnreachableError` when no domain is
        known yet and the platform does not answer.
        """
        schema = self.schemas.by_name(schema_name)
        fixed = fixed_point_values(schema, values)
        domain = await self.uplink.domain()
        key, clock = self.key, self._clock

        def sign(seq: int) -> tuple[Reading, bytes]:
            reading = key.reading(seq=seq, timestamp=clock(), schema=schema.id, values=fixed)
            return reading, key.sign(reading, domain.chain_id, domain.verifying_contract)

        entry = await asyncio.to_thread(self.buffer.append, key.address, domain, sign)
        return entry.reading

    async def flush(self) -> FlushReport:
        """Deliver the buffer (see :meth:`Uplink.flush`, or :meth:`MqttUplink.flush`)."""
        if self.mqtt is not None:
            return await self.mqtt.flush()
        return await self.uplink.flush()

    async def send(self, schema_name: str, values: Values) -> tuple[Reading, FlushReport]:
        """:meth:`record`, then :meth:`flush`. Offline, the reading is still recorded, and the
        report says the platform was unreachable and how many readings wait."""
        reading = await self.record(schema_name, values)
        return reading, await self.flush()
