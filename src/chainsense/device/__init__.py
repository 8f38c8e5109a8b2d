"""The device side: sign readings, keep them safe while the platform is unreachable, deliver them.

- :class:`OfflineBuffer`: the device's SQLite file: its seq counter (never reused, even across
  crashes), the signed readings not yet acknowledged, the ones refused for good (with the
  platform's problem), and the cached EIP-712 domain.
- :class:`DeviceClient`: ``record`` (sign into the buffer; no network needed once the domain is
  known), ``flush`` (deliver in seq order, in batches, with retries), ``send`` (both).
- :class:`Uplink`: the delivery half alone, which needs no key (``chainsense device flush``).

The ``chainsense device`` commands live in :mod:`chainsense.cli.device`.
"""

from chainsense.device.buffer import (
    BufferedReading,
    BufferStats,
    Domain,
    OfflineBuffer,
    RejectedReading,
)
from chainsense.device.client import DeviceClient, device_time_ms, fixed_point_values
from chainsense.device.errors import (
    DeviceError,
    OfflineBufferError,
    PlatformResponseError,
    PlatformUnreachableError,
)
from chainsense.device.uplink import FlushReport, Uplink

__all__ = [
    "BufferStats",
    "BufferedReading",
    "DeviceClient",
    "DeviceError",
    "Domain",
    "FlushReport",
    "OfflineBuffer",
    "OfflineBufferError",
    "PlatformResponseError",
    "PlatformUnreachableError",
    "RejectedReading",
    "Uplink",
    "device_time_ms",
    "fixed_point_values",
]
