"""The proof document, format ``chainsense.proof.v2``: everything a third party needs to check one
reading, from the device's signature up to a block hash, in one JSON object.

The format is specified, field by field, in ``docs/proof-format.md`` (with test vectors in
``tests/vectors/proofs/``). In short::

    {"format": "chainsense.proof.v2",
     "reading": {"device", "seq", "timestamp_ms", "schema", "values", "signature"},
     "domain": {"name", "version", "chain_id", "verifying_contract"},
     "schema": {"id", "name", "version", "metrics": [{"name", "unit", "scale"}, ...]},
     "struct_hash", "leaf", "merkle_proof": [...], "root",
     "anchor": {"chain_id", "contract", "tx_hash", "tx_index", "block_number", "block_hash",
                "block_time_s", "header_rlp", "receipt_proof": [...]},
     "reading_id", "batch_id"}

Field names are snake_case like the rest of the HTTP API; every integer is a canonical decimal
string (no sign on unsigned fields, no leading zeros, no ``-0``); bytes are ``0x`` hex.

Parsing is strict: a missing or unknown field, a wrong type, a non-canonical integer or another
format version is a :class:`ProofFormatError` naming the field (a JSON path). Parsing does not
judge content: a document whose leaf does not match its reading parses, then fails verification
naming the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chainsense.errors import ChainSenseError
from chainsense.identity._address import checksum_address
from chainsense.identity.reading import Reading
from chainsense.identity.schema_id import SCALE_MAX, SCALE_MIN, VERSION_MAX

__all__ = [
    "FORMAT",
    "MAX_PROOF_STEPS",
    "MAX_TRIE_NODES",
    "AnchorRef",
    "DomainRef",
    "MetricRef",
    "ProofDocument",
    "ProofFormatError",
    "SchemaRef",
    "reading_json",
]

FORMAT = "chainsense.proof.v2"
MAX_PROOF_STEPS = 256
"""Longer Merkle paths are refused: 256 steps cover any tree that fits in memory."""
MAX_TRIE_NODES = 64
"""A receipts-trie path is at most 64 nibbles deep (keys are at most 32 bytes)."""
MAX_BLOB = 1 << 20
"""No header, trie node or string field is larger than 1 MiB."""

_UINT = re.compile(r"0|[1-9][0-9]{0,77}")
_INT = re.compile(r"0|-?[1-9][0-9]{0,77}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


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
            "chain_id": str(self.chain_id),
            "verifying_contract": self.verifying_contract,
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
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "id": _hex(self.id),
            "name": self.name,
            "version": str(self.version),
            "metrics": [
                {"name": m.name, "unit": m.unit, "scale": str(m.scale)} for m in self.metrics
            ],
        }


@dataclass(frozen=True)
class AnchorRef:
    """Where the batch root was anchored, and the block evidence that ties it to a block hash."""

    chain_id: int
    contract: str
    tx_hash: bytes
    block_number: int
    block_time: int
    """Seconds since the Unix epoch (``block_time_s``)."""
    block_hash: bytes
    tx_index: int
    header_rlp: bytes
    receipt_proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": str(self.chain_id),
            "contract": self.contract,
            "tx_hash": _hex(self.tx_hash),
            "tx_index": str(self.tx_index),
            "block_number": str(self.block_number),
            "block_hash": _hex(self.block_hash),
            "block_time_s": str(self.block_time),
            "header_rlp": _hex(self.header_rlp),
            "receipt_proof": [_hex(n) for n in self.receipt_proof],
        }


@dataclass(frozen=True)
class ProofDocument:
    reading: Reading
    signature: bytes
    domain: DomainRef
    schema: SchemaRef
    struct_hash: bytes
    leaf: bytes
    proof: tuple[bytes, ...]
    root: bytes
    anchor: AnchorRef
    reading_id: int | None = None
    batch_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "reading": reading_json(self.reading, self.signature),
            "domain": self.domain.to_json(),
            "schema": self.schema.to_json(),
            "struct_hash": _hex(self.struct_hash),
            "leaf": _hex(self.leaf),
            "merkle_proof": [_hex(p) for p in self.proof],
            "root": _hex(self.root),
            "anchor": self.anchor.to_json(),
            "reading_id": None if self.reading_id is None else str(self.reading_id),
            "batch_id": None if self.batch_id is None else str(self.batch_id),
        }

    @classmethod
    def from_json(cls, obj: Any) -> ProofDocument:
        """Parse a v2 proof document; :class:`ProofFormatError` names the first bad field.

        The domain, schema and anchor blocks are the same for every proof of a batch: each
        parsed block is remembered (a bounded table keyed by its exact JSON strings), so a bundle
        pays for parsing them once per batch. Only well-formed blocks are remembered, and a key
        holds every member's text by name, so a hit returns what parsing the block would."""
        doc = _fields("", obj, _TOP)
        fmt = doc["format"]
        if fmt != FORMAT:
            raise ProofFormatError("format", f"expected {FORMAT!r}, got {fmt!r}")
        reading, signature = _reading(doc["reading"])
        merkle = _list("merkle_proof", doc["merkle_proof"], MAX_PROOF_STEPS)
        return cls(
            reading=reading,
            signature=signature,
            domain=_remembered(
                _DOMAINS, "domain", doc["domain"], _DOMAIN, _domain, "verifying_contract"
            ),
            schema=_schema_block(doc["schema"]),
            struct_hash=_bytes("struct_hash", doc["struct_hash"], 32),
            leaf=_bytes("leaf", doc["leaf"], 32),
            proof=_hashes("merkle_proof", merkle),
            root=_hash("root", doc["root"]),
            anchor=_remembered(_ANCHORS, "anchor", doc["anchor"], _ANCHOR, _anchor, "block_hash"),
            reading_id=_optional_uint("reading_id", doc["reading_id"]),
            batch_id=_optional_uint("batch_id", doc["batch_id"]),
        )


def _reading(value: Any) -> tuple[Reading, bytes]:
    raw = _fields("reading", value, _READING)
    values = _list("reading.values", raw["values"], 1024)
    text = raw["device"]
    device = _DEVICES.get(text) if type(text) is str else None
    if device is None:
        device = _address("reading.device", text)
        if len(_DEVICES) >= 1 << 16:
            _DEVICES.clear()
        _DEVICES[text] = device
    seq = _uint("reading.seq", raw["seq"], 64)
    timestamp = _uint("reading.timestamp_ms", raw["timestamp_ms"], 64)
    schema = _hash("reading.schema", raw["schema"])
    parsed = _ints("reading.values", values, 64)
    signature = _bytes("reading.signature", raw["signature"], 65)
    # Every field was checked above exactly as Reading checks it (an EIP-55 address, uint64,
    # 32 bytes, int64 values): build it without checking each field a second time.
    return Reading.checked(device, seq, timestamp, schema, parsed), signature


def _domain(domain: Mapping[str, Any]) -> DomainRef:
    return DomainRef(
        chain_id=_uint("domain.chain_id", domain["chain_id"], 256),
        verifying_contract=_address("domain.verifying_contract", domain["verifying_contract"]),
        name=_str("domain.name", domain["name"]),
        version=_str("domain.version", domain["version"]),
    )


def _anchor(anchor: Mapping[str, Any]) -> AnchorRef:
    nodes = _list("anchor.receipt_proof", anchor["receipt_proof"], MAX_TRIE_NODES)
    return AnchorRef(
        chain_id=_uint("anchor.chain_id", anchor["chain_id"], 256),
        contract=_address("anchor.contract", anchor["contract"]),
        tx_hash=_bytes("anchor.tx_hash", anchor["tx_hash"], 32),
        tx_index=_uint("anchor.tx_index", anchor["tx_index"], 64),
        block_number=_uint("anchor.block_number", anchor["block_number"], 64),
        block_hash=_bytes("anchor.block_hash", anchor["block_hash"], 32),
        block_time=_uint("anchor.block_time_s", anchor["block_time_s"], 64),
        header_rlp=_bytes("anchor.header_rlp", anchor["header_rlp"], None),
        receipt_proof=tuple(
            _bytes(f"anchor.receipt_proof[{i}]", n, None) for i, n in enumerate(nodes)
        ),
    )


# --- remembered blocks ---------------------------------------------------------------------------

_REMEMBER = 1024
"""Blocks kept per table; a full table is emptied (a bundle comes batch by batch)."""
_DOMAINS: dict[str, tuple[list[Any], Any]] = {}
_ANCHORS: dict[str, tuple[list[Any], Any]] = {}
_SCHEMAS: dict[tuple[str, ...], SchemaRef] = {}


def _remembered(
    table: dict[str, tuple[list[Any], Any]],
    field: str,
    value: Any,
    keys: tuple[str, ...],
    parse: Callable[[Mapping[str, Any]], Any],
    by: str,
) -> Any:
    """``parse(value)``, or the block parsed from the same texts before. The table is indexed
    by one short member (``by``: a block hash, a registry address); a hit also needs every
    member equal (compared, not hashed: a header is a kilobyte). A remembered block holds only
    strings (a list member as a tuple of strings), and a string equals only a string, so
    equal members are the same JSON texts."""
    obj = _fields(field, value, keys)
    texts = [obj[name] for name in keys]
    index = obj[by]
    found = table.get(index) if type(index) is str else None
    if found is not None and found[0] == texts:
        return found[1]
    parsed = parse(obj)
    if type(index) is str and all(
        type(t) is str or (type(t) is list and all(type(x) is str for x in t)) for t in texts
    ):
        if len(table) >= _REMEMBER:
            table.clear()
        table[index] = ([list(t) if type(t) is list else t for t in texts], parsed)
    return parsed


def _schema_block(value: Any) -> SchemaRef:
    obj = _fields("schema", value, _SCHEMA)
    metrics = obj["metrics"]
    key: tuple[str, ...] | None = None
    if type(metrics) is list and len(metrics) <= 1024:
        parts: list[str] = [obj["id"], obj["name"], obj["version"]]
        for m in metrics:
            if type(m) is not dict or m.keys() != _KEYSETS[_METRIC]:
                break
            parts.extend((m["name"], m["unit"], m["scale"]))
        else:
            if all(type(x) is str for x in parts):
                key = tuple(parts)
    if key is not None:
        found = _SCHEMAS.get(key)
        if found is not None:
            return found
    parsed = _schema(obj)
    if key is not None:
        if len(_SCHEMAS) >= _REMEMBER:
            _SCHEMAS.clear()
        _SCHEMAS[key] = parsed
    return parsed


_TOP = (
    "format", "reading", "domain", "schema", "struct_hash", "leaf", "merkle_proof", "root",
    "anchor", "reading_id", "batch_id",
)  # fmt: skip
_READING = ("device", "seq", "timestamp_ms", "schema", "values", "signature")
_DOMAIN = ("name", "version", "chain_id", "verifying_contract")
_SCHEMA = ("id", "name", "version", "metrics")
_METRIC = ("name", "unit", "scale")
_ANCHOR = (
    "chain_id", "contract", "tx_hash", "tx_index", "block_number", "block_hash",
    "block_time_s", "header_rlp", "receipt_proof",
)  # fmt: skip


_KEYSETS: dict[tuple[str, ...], frozenset[str]] = {
    keys: frozenset(keys) for keys in (_TOP, _READING, _DOMAIN, _SCHEMA, _METRIC, _ANCHOR)
}


_HASH_TEXTS: dict[str, bytes] = {}
"""bytes32 texts already decoded: the upper steps of Merkle paths repeat across a batch."""


_DEVICES: dict[str, str] = {}
"""Device address texts already parsed (well-formed only), to their EIP-55 form."""


def _hash(field: str, value: Any) -> bytes:
    """One bytes32, through the table of texts already decoded."""
    raw = _HASH_TEXTS.get(value) if type(value) is str else None
    if raw is None:
        raw = _bytes(field, value, 32)
        if len(_HASH_TEXTS) >= 1 << 16:
            _HASH_TEXTS.clear()
        _HASH_TEXTS[value] = raw
    return raw


def _hashes(field: str, items: list[Any]) -> tuple[bytes, ...]:
    """A list of bytes32 (the path of an item, ``field[i]``, is spelled only on an error)."""
    known = _HASH_TEXTS
    out: list[bytes] = []
    for item in items:
        raw = known.get(item) if type(item) is str else None
        if raw is None:
            raw = _bytes(f"{field}[{len(out)}]", item, 32)
            if type(item) is str:
                if len(known) >= 1 << 16:
                    known.clear()
                known[item] = raw
        out.append(raw)
    return tuple(out)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def reading_json(reading: Reading, signature: bytes) -> dict[str, Any]:
    """A v2 document's ``reading`` member: the signed reading and its signature."""
    return {
        "device": reading.device,
        "seq": str(reading.seq),
        "timestamp_ms": str(reading.timestamp),
        "schema": _hex(reading.schema),
        "values": [str(v) for v in reading.values],
        "signature": _hex(signature),
    }


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _fields(field: str, value: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """An object with exactly ``keys``: a missing or an unknown member is an error."""
    if type(value) is dict and value.keys() == _KEYSETS[keys]:
        return value  # the common case, checked in C
    if not isinstance(value, Mapping):
        raise ProofFormatError(field or "$", f"expected an object, got {_kind(value)}")
    for key in keys:
        if key not in value:
            raise ProofFormatError(_path(field, key), "missing")
    for key in value:
        if key not in keys:
            raise ProofFormatError(_path(field, str(key)), "unknown field")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _str(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ProofFormatError(field, f"expected a string, got {_kind(value)}")
    if len(value) > MAX_BLOB:
        raise ProofFormatError(field, "longer than 1 MiB")
    return value


def _list(field: str, value: Any, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ProofFormatError(field, f"expected a list, got {_kind(value)}")
    if len(value) > limit:
        raise ProofFormatError(field, f"more than {limit} items")
    return value


def _uint(field: str, value: Any, bits: int) -> int:
    if not isinstance(value, str) or not _UINT.fullmatch(value):
        raise ProofFormatError(
            field, f"expected an unsigned integer as a canonical decimal string, got {value!r}"
        )
    number = int(value)
    if number >= 2**bits:
        raise ProofFormatError(field, f"{value} does not fit uint{bits}")
    return number


def _int(field: str, value: Any, bits: int) -> int:
    if not isinstance(value, str) or not _INT.fullmatch(value):
        raise ProofFormatError(
            field, f"expected an integer as a canonical decimal string, got {value!r}"
        )
    number = int(value)
    if not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        raise ProofFormatError(field, f"{value} does not fit int{bits}")
    return number


def _ints(field: str, items: list[Any], bits: int) -> tuple[int, ...]:
    """``_int`` over a list; the path of an item (``field[i]``) is spelled only on an error."""
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)
    match = _INT.fullmatch
    out: list[int] = []
    for item in items:
        if type(item) is str and match(item):
            number = int(item)
            if low <= number < high:
                out.append(number)
                continue
        out.append(_int(f"{field}[{len(out)}]", item, bits))
    return tuple(out)


def _optional_uint(field: str, value: Any) -> int | None:
    return None if value is None else _uint(field, value, 64)


def _bytes(field: str, value: Any, size: int | None) -> bytes:
    text = _str(field, value)
    try:
        raw = bytes.fromhex(text[2:]) if text[:2] == "0x" else None
    except ValueError:
        raw = None
    # fromhex skips whitespace between pairs: the length check refuses it
    if raw is None or 2 * len(raw) != len(text) - 2:
        raise ProofFormatError(field, "expected 0x followed by an even number of hex digits")
    if size is not None and len(raw) != size:
        raise ProofFormatError(field, f"expected {size} bytes, got {len(raw)}")
    return raw


def _address(field: str, value: Any) -> str:
    """A 20-byte address; any letter case is accepted, it is compared as bytes."""
    text = _str(field, value)
    if not _ADDRESS.fullmatch(text):
        raise ProofFormatError(field, "expected 0x followed by 40 hex digits")
    return checksum_address(text.lower())


def _schema(obj: Mapping[str, Any]) -> SchemaRef:
    metrics = _list("schema.metrics", obj["metrics"], 1024)
    refs = []
    for i, raw in enumerate(metrics):
        at = f"schema.metrics[{i}]"
        m = _fields(at, raw, _METRIC)
        scale = _int(f"{at}.scale", m["scale"], 64)
        if not SCALE_MIN <= scale <= SCALE_MAX:
            raise ProofFormatError(f"{at}.scale", f"{scale} does not fit int8")
        refs.append(MetricRef(_str(f"{at}.name", m["name"]), _str(f"{at}.unit", m["unit"]), scale))
    version = _uint("schema.version", obj["version"], 64)
    if version > VERSION_MAX:
        raise ProofFormatError("schema.version", f"{version} does not fit uint32")
    return SchemaRef(
        id=_bytes("schema.id", obj["id"], 32),
        name=_str("schema.name", obj["name"]),
        version=version,
        metrics=tuple(refs),
    )
