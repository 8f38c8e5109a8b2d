"""The reading: the domain form of the signed struct, its validation and its raw JSON form.

The wire format (public; ``DeviceRegistry.sol`` and device firmware depend on it)::

    Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)

- ``seq``: per-device counter; it starts at 1 and strictly increases (checked at ingest).
- ``timestamp``: the device clock, in milliseconds since the Unix epoch.
- ``schema``: the schema id, a content hash of the schema definition
  (:func:`chainsense.identity.schema_id.schema_id`).
- ``values``: fixed-point integers, in the schema's order and scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chainsense.identity._address import checksum_address
from chainsense.identity.errors import InvalidReadingError

__all__ = ["INT64_MAX", "INT64_MIN", "UINT64_MAX", "Reading"]

UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_JSON_SAFE_INT = 2**53 - 1  # beyond this, JSON numbers lose precision in JavaScript


def _uint64(field: str, value: object) -> int:
    if type(value) is not int:
        raise InvalidReadingError(field, f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= UINT64_MAX:
        raise InvalidReadingError(field, f"{value} is outside uint64 [0, 2^64-1]")
    return value


def _int64_values(value: object) -> tuple[int, ...]:
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise InvalidReadingError(
            "values", f"expected a list of integers, got {type(value).__name__}"
        )
    items = tuple(value)
    for i, v in enumerate(items):
        if type(v) is not int:
            raise InvalidReadingError(
                f"values[{i}]", f"expected an integer, got {type(v).__name__}"
            )
        if not INT64_MIN <= v <= INT64_MAX:
            raise InvalidReadingError(f"values[{i}]", f"{v} is outside int64 [-2^63, 2^63-1]")
    return items


def _schema(value: object) -> bytes:
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if type(value) is not bytes:
        raise InvalidReadingError("schema", f"expected 32 bytes, got {type(value).__name__}")
    if len(value) != 32:
        raise InvalidReadingError("schema", f"expected 32 bytes, got {len(value)}")
    return value


@dataclass(frozen=True, slots=True, repr=False)
class Reading:
    """One signed-struct reading (the domain form; the signature travels beside it).

    Construction validates every field and raises :class:`InvalidReadingError` naming the field:
    ``device`` is normalised to its EIP-55 form (all-lower and all-upper hex are accepted, a wrong
    mixed-case checksum is not); ``seq`` and ``timestamp`` (ms since the epoch) are uint64;
    ``schema`` is 32 bytes (a schema id); ``values`` are int64 fixed-point integers,
    given as any iterable and kept as a tuple. ``bool`` is not an integer here.

    That ``seq`` starts at 1 and increases per device is the ingest's check, not this type's.
    """

    device: str
    seq: int
    timestamp: int
    schema: bytes
    values: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        try:
            device = checksum_address(self.device)
        except ValueError as exc:
            raise InvalidReadingError("device", str(exc)) from None
        set_ = object.__setattr__
        if device != self.device:
            set_(self, "device", device)
        _uint64("seq", self.seq)
        _uint64("timestamp", self.timestamp)
        schema = _schema(self.schema)
        if schema is not self.schema:
            set_(self, "schema", schema)
        values = _int64_values(self.values)
        if values is not self.values:
            set_(self, "values", values)

    @classmethod
    def checked(
        cls, device: str, seq: int, timestamp: int, schema: bytes, values: tuple[int, ...]
    ) -> Reading:
        """A reading from fields the caller has already checked exactly as construction does
        (``device`` in EIP-55 form, uint64 ``seq`` and ``timestamp``, 32-byte ``schema``, a
        tuple of int64 ``values``): for parsers that validate every field themselves and
        name it in their own terms (the proof parser)."""
        reading = object.__new__(cls)
        set_ = object.__setattr__
        set_(reading, "device", device)
        set_(reading, "seq", seq)
        set_(reading, "timestamp", timestamp)
        set_(reading, "schema", schema)
        set_(reading, "values", values)
        return reading

    def __repr__(self) -> str:
        return (
            f"Reading(device={self.device!r}, seq={self.seq}, timestamp={self.timestamp}, "
            f"schema=0x{self.schema.hex()}, values={self.values!r})"
        )

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Reading:
        """Parse the raw JSON form (``device``, ``seq``, ``timestamp``, ``schema``, ``values``).

        Integers may be JSON numbers or decimal strings (for values beyond 2^53); ``schema`` is
        0x-hex. Other keys (``signature``, ...) are ignored: the envelope is the caller's.
        """
        if not isinstance(obj, Mapping):
            raise InvalidReadingError("reading", f"expected an object, got {type(obj).__name__}")
        fields: dict[str, Any] = {}
        for name in ("device", "seq", "timestamp", "schema", "values"):
            if name not in obj:
                raise InvalidReadingError(name, "missing")
            fields[name] = obj[name]
        raw_values = fields["values"]
        if not isinstance(raw_values, list | tuple):
            raise InvalidReadingError(
                "values", f"expected a list of integers, got {type(raw_values).__name__}"
            )
        return cls(
            device=fields["device"],
            seq=_json_int("seq", fields["seq"]),
            timestamp=_json_int("timestamp", fields["timestamp"]),
            schema=_hex32("schema", fields["schema"]),
            values=tuple(_json_int(f"values[{i}]", v) for i, v in enumerate(raw_values)),
        )

    def to_json(self) -> dict[str, Any]:
        """The raw JSON form; integers beyond 2^53-1 in magnitude become decimal strings."""
        return {
            "device": self.device,
            "seq": _to_json_int(self.seq),
            "timestamp": _to_json_int(self.timestamp),
            "schema": "0x" + self.schema.hex(),
            "values": [_to_json_int(v) for v in self.values],
        }


def _json_int(field: str, value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str):
        text = value[1:] if value[:1] == "-" else value
        if text.isascii() and text.isdigit() and len(value) <= 21:
            return int(value)
        raise InvalidReadingError(field, f"{value!r} is not a decimal integer")
    raise InvalidReadingError(field, f"expected an integer, got {type(value).__name__}")


def _to_json_int(value: int) -> int | str:
    return value if -_JSON_SAFE_INT <= value <= _JSON_SAFE_INT else str(value)


def _hex32(field: str, value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 66 or value[:2] != "0x":
        raise InvalidReadingError(field, "expected 0x followed by 64 hex digits")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise InvalidReadingError(field, "expected 0x followed by 64 hex digits") from None
