"""The proof document: everything a third party needs to check one reading, in one JSON object.

The format is public (ARCHITECTURE "Wire formats") and versioned by ``format``::

    {"format": "chainsense.proof.v1",
     "reading": {"device", "seq", "timestamp", "schema", "values", "signature"},
     "domain": {"name": "ChainSense", "version": "1", "chainId", "verifyingContract"},
     "schema": {"id", "name", "metrics": [{"name", "unit", "scale"}, ...]},
     "structHash": "0x…", "leaf": "0x…", "proof": ["0x…", …], "root": "0x…",
     "anchor": {"chainId", "contract", "txHash", "blockNumber", "blockTime"},
     "readingId": 17, "batchId": 3}

``domain`` is the EIP-712 domain the device signed in (``verifyingContract`` is the
DeviceRegistry); ``anchor.contract`` is the ReadingAnchor. ``structHash`` is the EIP-712
``hashStruct(reading)``, the value the Merkle leaf commits to. ``readingId`` and ``batchId`` are
the issuing platform's references, not part of what is checked.

Parsing is strict about shapes and names the offending field (:class:`ProofFormatError`), but
it does not judge the content: a document whose leaf does not match its reading parses fine and
then fails verification, naming the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chainsense.errors import ChainSenseError
from chainsense.identity import InvalidReadingError, Reading
from chainsense.identity._address import checksum_address

__all__ = [
    "FORMAT",
    "MAX_PROOF_STEPS",
    "AnchorRef",
    "DomainRef",
    "MetricRef",
    "ProofDocument",
    "ProofFormatError",
    "SchemaRef",
]

FORMAT = "chainsense.proof.v1"
MAX_PROOF_STEPS = 256
"""Longer paths are refused: 256 steps already cover any tree that fits in memory."""


class ProofFormatError(ChainSenseError):
    """A proof document is not shaped as the format says; ``field`` is a JSON path."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class DomainRef:
    chain_id: int
    verifying_contract: str
    name: str = "ChainSense"
    version: str = "1"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


@dataclass(frozen=True)
class MetricRef:
    name: str
    unit: str
    scale: int


@dataclass(frozen=True)
class SchemaRef:
    id: bytes
    name: str
    metrics: tuple[MetricRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": _hex(self.id),
            "name": self.name,
            "metrics": [{"name": m.name, "unit": m.unit, "scale": m.scale} for m in self.metrics],
        }


@dataclass(frozen=True)
class AnchorRef:
    chain_id: int
    contract: str
    tx_hash: bytes
    block_number: int
    block_time: int

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "contract": self.contract,
            "txHash": _hex(self.tx_hash),
            "blockNumber": self.block_number,
            "blockTime": self.block_time,
        }


@dataclass(frozen=True)
class ProofDocument:
    reading: Reading
    signature: bytes
    domain: DomainRef
    schema: SchemaRef | None
    struct_hash: bytes
    leaf: bytes
    proof: tuple[bytes, ...]
    root: bytes
    anchor: AnchorRef
    reading_id: int | None = None
    batch_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "reading": {**self.reading.to_json(), "signature": _hex(self.signature)},
            "domain": self.domain.to_json(),
            "schema": self.schema.to_json() if self.schema is not None else None,
            "structHash": _hex(self.struct_hash),
            "leaf": _hex(self.leaf),
            "proof": [_hex(p) for p in self.proof],
            "root": _hex(self.root),
            "anchor": self.anchor.to_json(),
        }
        if self.reading_id is not None:
            doc["readingId"] = self.reading_id
        if self.batch_id is not None:
            doc["batchId"] = self.batch_id
        return doc

    @classmethod
    def from_json(cls, obj: Any) -> ProofDocument:
        """Parse a proof document; :class:`ProofFormatError` names the first bad field."""
        doc = _object("$", obj)
        fmt = doc.get("format", FORMAT)
        if fmt != FORMAT:
            raise ProofFormatError("format", f"expected {FORMAT!r}, got {fmt!r}")
        raw_reading = _object("reading", _get(doc, "reading"))
        try:
            reading = Reading.from_json(raw_reading)
        except InvalidReadingError as exc:
            raise ProofFormatError(f"reading.{exc.field}", exc.reason) from None
        domain = _object("domain", _get(doc, "domain"))
        anchor = _object("anchor", _get(doc, "anchor"))
        raw_schema = doc.get("schema")
        schema = None if raw_schema is None else _schema("schema", raw_schema)
        raw_proof = _get(doc, "proof")
        if not isinstance(raw_proof, list):
            raise ProofFormatError("proof", "expected a list of 0x-hex bytes32")
        if len(raw_proof) > MAX_PROOF_STEPS:
            raise ProofFormatError("proof", f"more than {MAX_PROOF_STEPS} steps")
        return cls(
            reading=reading,
            signature=_bytes("reading.signature", _get(raw_reading, "signature", "reading"), 65),
            domain=DomainRef(
                chain_id=_int("domain.chainId", _get(domain, "chainId", "domain")),
                verifying_contract=_address(
                    "domain.verifyingContract", _get(domain, "verifyingContract", "domain")
                ),
                name=_str("domain.name", domain.get("name", "ChainSense")),
                version=_str("domain.version", domain.get("version", "1")),
            ),
            schema=schema,
            struct_hash=_bytes("structHash", _get(doc, "structHash"), 32),
            leaf=_bytes("leaf", _get(doc, "leaf"), 32),
            proof=tuple(_bytes(f"proof[{i}]", p, 32) for i, p in enumerate(raw_proof)),
            root=_bytes("root", _get(doc, "root"), 32),
            anchor=AnchorRef(
                chain_id=_int("anchor.chainId", _get(anchor, "chainId", "anchor")),
                contract=_address("anchor.contract", _get(anchor, "contract", "anchor")),
                tx_hash=_bytes("anchor.txHash", _get(anchor, "txHash", "anchor"), 32),
                block_number=_int("anchor.blockNumber", _get(anchor, "blockNumber", "anchor")),
                block_time=_int("anchor.blockTime", _get(anchor, "blockTime", "anchor")),
            ),
            reading_id=_optional_int("readingId", doc.get("readingId")),
            batch_id=_optional_int("batchId", doc.get("batchId")),
        )


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _get(obj: Mapping[str, Any], key: str, parent: str = "") -> Any:
    if key not in obj:
        raise ProofFormatError(f"{parent}.{key}" if parent else key, "missing")
    return obj[key]


def _object(field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProofFormatError(field, f"expected an object, got {type(value).__name__}")
    return value


def _str(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ProofFormatError(field, f"expected a string, got {type(value).__name__}")
    return value


def _int(field: str, value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        value = int(value)  # ascii only: int() refuses some of what str.isdigit() takes ("²")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**256:
        raise ProofFormatError(field, f"expected an integer in [0, 2^256), got {value!r}")
    return value


def _signed_int(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
        raise ProofFormatError(field, f"expected an int64, got {value!r}")
    return value


def _optional_int(field: str, value: Any) -> int | None:
    return None if value is None else _int(field, value)


def _bytes(field: str, value: Any, size: int) -> bytes:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise ProofFormatError(field, f"expected 0x-hex of {size} bytes")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise ProofFormatError(field, "not hex") from None
    if len(raw) != size:
        raise ProofFormatError(field, f"expected {size} bytes, got {len(raw)}")
    return raw


def _address(field: str, value: Any) -> str:
    try:
        return checksum_address(_str(field, value))
    except ValueError as exc:
        raise ProofFormatError(field, str(exc)) from None


def _schema(field: str, value: Any) -> SchemaRef:
    obj = _object(field, value)
    metrics = _get(obj, "metrics", field)
    if not isinstance(metrics, list):
        raise ProofFormatError(f"{field}.metrics", "expected a list")
    refs = []
    for i, raw in enumerate(metrics):
        m = _object(f"{field}.metrics[{i}]", raw)
        refs.append(
            MetricRef(
                name=_str(f"{field}.metrics[{i}].name", _get(m, "name", f"{field}.metrics[{i}]")),
                unit=_str(f"{field}.metrics[{i}].unit", _get(m, "unit", f"{field}.metrics[{i}]")),
                scale=_signed_int(  # a scale may be negative: v * 10^-scale
                    f"{field}.metrics[{i}].scale", _get(m, "scale", f"{field}.metrics[{i}]")
                ),
            )
        )
    return SchemaRef(
        id=_bytes(f"{field}.id", _get(obj, "id", field), 32),
        name=_str(f"{field}.name", _get(obj, "name", field)),
        metrics=tuple(refs),
    )
