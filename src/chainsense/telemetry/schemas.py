"""The schema registry: what a schema id means.

A schema id is a content hash of the whole definition: name, version and the ordered metrics
with their units and scales (:mod:`chainsense.identity.schema_id`, docs/proof-format.md). A
schema lists its metrics in the
order a reading's ``values`` carry them, each with its SenML (RFC 8428) name and unit and a decimal
``scale``: the signed integer ``v`` means ``v * 10**-scale`` units. Values are integers everywhere
they are signed, hashed or stored; decimals appear only at the API edge (SenML form).

>>> cold = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
>>> [m.name for m in cold.metrics]
['temperature', 'humidity']
>>> cold.to_fixed("temperature", Decimal("4.15"))
415
>>> str(cold.metrics[0].to_decimal(-1850))
'-18.50'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from chainsense.errors import ChainSenseError
from chainsense.identity.reading import INT64_MAX, INT64_MIN
from chainsense.identity.schema_id import SCALE_MAX, SCALE_MIN, schema_id
from chainsense.strictjson import quote

__all__ = [
    "BUILTIN_SCHEMAS",
    "Metric",
    "Schema",
    "SchemaRegistry",
    "UnknownSchemaError",
    "ValueScaleError",
]


class UnknownSchemaError(ChainSenseError):
    """No schema has this id or name."""

    def __init__(self, key: str) -> None:
        super().__init__(f"unknown schema {key}; GET /v1/schemas lists the known ones")
        self.key = key


class ValueScaleError(ChainSenseError):
    """A decimal value does not fit the metric's fixed-point scale or the int64 range."""

    def __init__(self, metric: str, message: str) -> None:
        super().__init__(f"{metric}: {message}")
        self.metric = metric


@dataclass(frozen=True)
class Metric:
    """One value of a reading: SenML name, SenML unit, and decimal scale."""

    name: str
    unit: str
    scale: int
    description: str = ""

    def to_decimal(self, value: int) -> Decimal:
        return Decimal(value).scaleb(-self.scale)

    def to_fixed(self, value: Decimal | int | str) -> int:
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError) as exc:
            raise ValueScaleError(self.name, f"{_shown(value)} is not a number") from exc
        if not number.is_finite():
            raise ValueScaleError(self.name, f"{_shown(value)} is not a finite number")
        # Exact and context-free, on the digits and the exponent: Decimal arithmetic rounds to
        # 28 digits, raises Overflow past 1e999999, underflows to 0, and int() of 1e500000
        # takes seconds of CPU.
        sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite
        shift = exponent + self.scale
        if shift < 0:
            if any(digits[shift:]):
                raise ValueScaleError(
                    self.name,
                    f"{_shown(value)} has more decimals than the schema's scale ({self.scale})",
                )
            digits, shift = digits[:shift], 0
        if not any(digits):
            return 0
        if len(digits) + shift > 19:
            raise ValueScaleError(
                self.name, f"{_shown(value)} is outside the int64 fixed-point range"
            )
        magnitude = int("".join(map(str, digits)) + "0" * shift)
        fixed = -magnitude if sign else magnitude
        if not INT64_MIN <= fixed <= INT64_MAX:
            raise ValueScaleError(
                self.name, f"{_shown(value)} is outside the int64 fixed-point range"
            )
        return fixed


_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def _shown(value: Decimal | int | str) -> str:
    """A value for a message: a number (or a numeric string) as written, any other string
    JSON-quoted and escaped; both cut short."""
    text = str(value)
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        return quote(value)
    return text if len(text) <= 40 else text[:40] + "\u2026"


@dataclass(frozen=True)
class Schema:
    """A named, versioned, ordered list of metrics. ``id`` commits to all of it (name, version,
    each metric's name, unit and scale); descriptions are documentation, not committed."""

    name: str
    metrics: tuple[Metric, ...]
    description: str = ""
    version: int = 1
    id: bytes = field(init=False)

    def __post_init__(self) -> None:
        for m in self.metrics:
            if not SCALE_MIN <= m.scale <= SCALE_MAX:
                raise ValueError(f"{self.name}: scale {m.scale} of {m.name} is not an int8")
        committed = [(m.name, m.unit, m.scale) for m in self.metrics]
        object.__setattr__(self, "id", schema_id(self.name, self.version, committed))

    @property
    def id_hex(self) -> str:
        return "0x" + self.id.hex()

    def metric(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise ValueScaleError(name, f"not a metric of {self.name}")

    def to_fixed(self, name: str, value: Decimal | int | str) -> int:
        return self.metric(name).to_fixed(value)


class SchemaRegistry:
    """Schemas by id and by name."""

    def __init__(self, schemas: Iterable[Schema] = ()) -> None:
        self._by_id: dict[bytes, Schema] = {}
        self._by_name: dict[str, Schema] = {}
        for schema in schemas:
            self.add(schema)

    def add(self, schema: Schema) -> None:
        if schema.name in self._by_name:
            raise ValueError(f"schema {schema.name} is already registered")
        self._by_id[schema.id] = schema
        self._by_name[schema.name] = schema

    def by_id(self, schema_id: bytes) -> Schema:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError("0x" + schema_id.hex()) from None

    def by_name(self, name: str) -> Schema:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownSchemaError(name) from None

    def resolve(self, key: str) -> Schema:
        """A schema from its 0x-hex id or its name."""
        if key.startswith("0x") and len(key) == 66:
            try:
                return self.by_id(bytes.fromhex(key[2:]))
            except ValueError:
                raise UnknownSchemaError(key) from None
        return self.by_name(key)

    def __iter__(self) -> Iterator[Schema]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


BUILTIN_SCHEMAS = SchemaRegistry(
    [
        Schema(
            "chainsense.coldchain.v1",
            (
                Metric("temperature", "Cel", 2, "air temperature in the cargo space"),
                Metric("humidity", "%RH", 1, "relative humidity"),
            ),
            "Refrigerated transport logger",
        ),
        Schema(
            "chainsense.meter.v1",
            (
                Metric("energy_imported", "Wh", 0, "energy taken from the grid in the interval"),
                Metric("energy_exported", "Wh", 0, "energy fed into the grid in the interval"),
            ),
            "Electricity smart meter, one reading per metering interval",
        ),
        Schema(
            "chainsense.charger.v1",
            (Metric("energy_delivered", "Wh", 0, "energy delivered so far in the session"),),
            "EV charger meter",
        ),
        Schema(
            "chainsense.machine.v1",
            (
                Metric("vibration_rms", "m/s2", 3, "RMS vibration acceleration"),
                Metric("temperature", "Cel", 2, "bearing temperature"),
                Metric("current", "A", 3, "motor current"),
            ),
            "Rotating machine condition monitor",
        ),
    ]
)
