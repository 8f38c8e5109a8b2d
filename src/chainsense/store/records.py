"""What goes in and comes out of the store: plain frozen dataclasses, no ORM objects.

Addresses are EIP-55 checksum strings; a reading's schema id, signature and struct hash are raw
``bytes`` (a device's metadata hash is 0x-hex, as the registry events carry it); times the
platform records are timezone-aware UTC datetimes; the device's own clock (``timestamp``) stays
an integer number of milliseconds, exactly as it was signed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from eth_utils.address import to_checksum_address

from chainsense.identity.reading import INT64_MAX, INT64_MIN

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "ApiKeyRecord",
    "DeviceRecord",
    "DeviceStatus",
    "InsertResult",
    "NewReading",
    "Outcome",
    "Scope",
    "StoredReading",
    "checksum_address",
]


_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class NewReading:
    """A verified reading, ready to store: every signed field, plus what it hashes to."""

    device: str
    """The signing key's checksum address."""
    seq: int
    timestamp: int
    """The device clock, ms since the Unix epoch."""
    schema: bytes
    """32 bytes: the schema id (a content hash of the schema definition)."""
    values: tuple[int, ...]
    """int64 fixed-point values, in the schema's order."""
    signature: bytes
    """65 bytes (r, s, v)."""
    struct_hash: bytes
    """32 bytes: EIP-712 ``hashStruct(reading)``, the input of the Merkle leaf."""


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as stored; ``id`` is its public, never reused reading id."""

    id: int
    device: str
    seq: int
    timestamp: int
    schema: bytes
    values: tuple[int, ...]
    signature: bytes
    struct_hash: bytes
    received_at: datetime
    """Server time when the batch holding it was stored (UTC)."""
    batch_id: int | None
    """The Merkle batch that seals it, once there is one."""


class Outcome(enum.Enum):
    """What :meth:`ReadingRepository.insert_batch` did with one reading."""

    STORED = "stored"
    """Stored now; durable when ``insert_batch`` returns."""
    DUPLICATE = "duplicate"
    """The identical reading (same device, seq, struct hash and signature) is already stored."""
    CONFLICT = "conflict"
    """This device's seq is already used by a different reading."""
    STALE = "stale"
    """The seq is unused, but not above the highest seq stored for the device."""
    UNKNOWN_DEVICE = "unknown_device"
    """No device row for that address."""


@dataclass(frozen=True, slots=True)
class InsertResult:
    outcome: Outcome
    reading_id: int | None
    """The new id (STORED), the id of the stored reading (DUPLICATE, CONFLICT), else None."""


class DeviceStatus(enum.StrEnum):
    """The registry status of a signing key."""

    ACTIVE = "active"
    REVOKED = "revoked"
    """The device was revoked: its new readings are refused, its old ones stay verifiable."""
    ROTATED = "rotated"
    """This key was replaced by a new key of the same device identity."""


class Scope(enum.StrEnum):
    """What an API key may do. Each scope includes the ones below it."""

    ADMIN = "admin"
    OPERATOR = "operator"
    READER = "reader"


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """The local mirror of one signing key in the on-chain DeviceRegistry."""

    address: str
    """The signing key (checksum address); readings name it as their ``device``."""
    identity: str
    """The device identity: the first key it was registered with (== address until rotation)."""
    owner: str
    metadata_hash: str
    """32 bytes as 0x + 64 lower-case hex digits, as the registry events carry it."""
    status: DeviceStatus
    registered_at: datetime
    revoked_at: datetime | None
    last_seq: int
    """The highest seq stored for this key (0: none yet)."""
    label: str | None = None
    """An operator's name for the device (not on-chain)."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never the key itself, only its public prefix."""

    id: int
    name: str
    prefix: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@lru_cache(maxsize=65536)
def checksum_address(value: str) -> str:
    """The EIP-55 form of ``0x`` + 40 hex digits; ValueError on anything else.

    All-lower and all-upper case are taken as unchecksummed; mixed case must be a correct
    checksum (a typo in a checksummed address is caught, not silently normalized).
    """
    if not isinstance(value, str) or len(value) != 42 or value[:2] != "0x":
        raise ValueError(f"not an address (0x + 40 hex digits): {value!r}")
    digits = value[2:]
    if not _HEX.issuperset(digits):
        raise ValueError(f"not an address (0x + 40 hex digits): {value!r}")
    result = str(to_checksum_address("0x" + digits.lower()))
    if digits not in (digits.lower(), digits.upper(), result[2:]):
        raise ValueError(f"address with a wrong EIP-55 checksum: {value!r}")
    return result


def utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC; ValueError if it is naive (a naive time is ambiguous)."""
    if not isinstance(value, datetime):
        raise ValueError(f"{field}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: a timezone-aware datetime is required")
    return value.astimezone(UTC)


def to_bytes(value: bytes | str, size: int, field: str) -> bytes:
    """``size`` raw bytes from bytes or a 0x-prefixed hex string; ValueError otherwise."""
    if isinstance(value, str):
        if value[:2] != "0x":
            raise ValueError(f"{field}: expected 0x-prefixed hex")
        try:
            value = bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError(f"{field}: expected 0x-prefixed hex") from None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{field}: expected bytes, got {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != size:
        raise ValueError(f"{field}: expected {size} bytes, got {len(raw)}")
    return raw
