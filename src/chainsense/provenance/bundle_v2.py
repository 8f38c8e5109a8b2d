"""The bundle format ``chainsense.bundle.v2``: many proofs in JSON lines, the parts a batch shares
written once (specified in ``docs/proof-format.md``, section 7)::

    {"format":"chainsense.bundle.v2"}
    {"batch":{"root","domain","schema","anchor","batch_id"}}        the section's shared parts
    {"proof":{"reading","merkle_proof","reading_id"}}               one per reading
    {"proof":{...}}
    {"pending":{"reading_id","state","batch_id",...}}                not anchored yet (not checked)
    {"batch":{...}}                                                  the next section
    ...

A proof line belongs to the nearest batch line above it. Together they hold exactly what a
``chainsense.proof.v2`` document holds, less ``struct_hash`` and ``leaf``, which the verifier
computes from the reading (:func:`document` rebuilds the v2 document). The ``contracts``,
``domain``, ``header`` and ``receipt`` checks and the schema block's hash are settled once per
batch line; ``schema``, ``signature`` and ``merkle-path`` run for every proof line.

A batch line starts with the bytes ``{"batch":`` (writers put no space there), so a reader finds
the section of any byte offset without parsing: :func:`batch_offsets`.
"""

from __future__ import annotations

import gc
import json
import mmap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from chainsense.identity import IdentityError, keccak256, struct_hash
from chainsense.identity._address import address_bytes
from chainsense.identity.eip712 import _EMPTY_VALUES_HASH, _STRUCT_PREFIX
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import (
    _ANCHOR,
    _DOMAIN,
    _KEYSETS,
    MAX_PROOF_STEPS,
    AnchorRef,
    DomainRef,
    ProofDocument,
    ProofFormatError,
    SchemaRef,
    _anchor,
    _bytes,
    _domain,
    _fields,
    _hash,
    _optional_uint,
    _reading,
    _remembered,
    _schema_block,
)
from chainsense.provenance.verify import (
    _NODES,
    _NODES_MAX,
    Check,
    _verifier,
    block_checks,
    contracts_check,
    domain_check,
    path_check,
    schema_check,
    signature_check,
    signer_of,
    walk_path,
)
from chainsense.provenance.verify import _schema_block as _schema_verdict

if TYPE_CHECKING:
    from chainsense.provenance.bundle import ChunkResult

__all__ = [
    "BATCH_PREFIX",
    "BUNDLE_FORMAT",
    "HEADER",
    "BatchSection",
    "BundleWriter",
    "batch_offsets",
    "bundle_lines",
    "document",
    "documents",
    "is_bundle_v2",
]

BUNDLE_FORMAT = "chainsense.bundle.v2"
HEADER = b'{"format":"chainsense.bundle.v2"}'
BATCH_PREFIX = b'{"batch":'
_BATCH = ("root", "domain", "schema", "anchor", "batch_id")
_PROOF = ("reading", "merkle_proof", "reading_id")
_DOMAINS_V2: dict[str, tuple[list[Any], Any]] = {}
_ANCHORS_V2: dict[str, tuple[list[Any], Any]] = {}
for _keys in (_BATCH, _PROOF, ("proof",), ("format",)):
    _KEYSETS.setdefault(_keys, frozenset(_keys))


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode("utf-8")


@dataclass(frozen=True)
class BatchSection:
    """The parts a batch line gives every proof line of its section."""

    root: bytes
    domain: DomainRef
    schema: SchemaRef
    anchor: AnchorRef
    batch_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "root": "0x" + self.root.hex(),
            "domain": self.domain.to_json(),
            "schema": self.schema.to_json(),
            "anchor": self.anchor.to_json(),
            "batch_id": None if self.batch_id is None else str(self.batch_id),
        }

    @classmethod
    def from_json(cls, obj: Any) -> BatchSection:
        """Parse the object of a batch line (its ``batch`` member); strict as a v2 proof: the
        fields are named ``batch.…``."""
        try:
            inner = _fields("batch", obj, _BATCH)
            return cls(
                root=_hash("batch.root", inner["root"]),
                domain=_remembered(
                    _DOMAINS_V2, "domain", inner["domain"], _DOMAIN, _domain, "verifying_contract"
                ),
                schema=_schema_block(inner["schema"]),
                anchor=_remembered(
                    _ANCHORS_V2, "anchor", inner["anchor"], _ANCHOR, _anchor, "block_hash"
                ),
                batch_id=_optional_uint("batch.batch_id", inner["batch_id"]),
            )
        except ProofFormatError as exc:
            raise _under("batch", exc) from None


def _under(parent: str, exc: ProofFormatError) -> ProofFormatError:
    field = exc.field if exc.field.startswith(parent + ".") else f"{parent}.{exc.field}"
    return ProofFormatError(field, exc.detail)


def _section_of(doc: ProofDocument) -> BatchSection:
    return BatchSection(doc.root, doc.domain, doc.schema, doc.anchor, doc.batch_id)


class BundleWriter:
    """Writes a bundle one item at a time (for streaming): :meth:`lines` gives the lines an
    item adds, the format line first. A batch line is written whenever a proof's batch,
    schema, domain or anchor differs from the previous proof's."""

    def __init__(self) -> None:
        self._started = False
        self._section: BatchSection | None = None

    def lines(self, item: ProofDocument | Mapping[str, Any]) -> list[str]:
        out = [] if self._started else [HEADER.decode()]
        self._started = True
        if not isinstance(item, ProofDocument):
            body = dict(item)
            body.pop("status", None)
            out.append(_dumps({"pending": body}))
            return out
        section = _section_of(item)
        if section != self._section:
            self._section = section
            out.append(_dumps({"batch": section.to_json()}))
        out.append(proof_line(item))
        return out

    def finish(self) -> list[str]:
        """The format line, when no item was written (an empty bundle)."""
        started, self._started = self._started, True
        return [] if started else [HEADER.decode()]


def bundle_lines(items: Iterable[ProofDocument | Mapping[str, Any]]) -> Iterator[str]:
    """The lines (without line breaks) of a bundle of ``items``: proof documents, and pending
    answers (their JSON objects) for readings not anchored yet."""
    writer = BundleWriter()
    for item in items:
        yield from writer.lines(item)
    yield from writer.finish()


def proof_line(doc: ProofDocument) -> str:
    full = doc.to_json()
    body = {
        "reading": full["reading"],
        "merkle_proof": "0x" + b"".join(doc.proof).hex(),
        "reading_id": full["reading_id"],
    }
    return _dumps({"proof": body})


@dataclass(frozen=True, slots=True)
class ProofLine:
    reading: Any
    signature: bytes
    path: tuple[bytes, ...]
    reading_id: int | None


def parse_proof_line(obj: Any) -> ProofLine:
    """The object of a proof line (the whole line, ``{"proof": {...}}``)."""
    try:
        body = _fields("", obj, ("proof",))["proof"]
        p = _fields("proof", body, _PROOF)
        reading, signature = _reading(p["reading"])
        path = _packed("merkle_proof", p["merkle_proof"])
        reading_id = _optional_uint("reading_id", p["reading_id"])
    except ProofFormatError as exc:
        raise _under("proof", exc) from None
    return ProofLine(reading, signature, path, reading_id)


def _packed(field: str, value: Any) -> tuple[bytes, ...]:
    """A Merkle path as one hex string: the sibling hashes concatenated (one decode per proof
    instead of one per step)."""
    raw = _bytes(field, value, None)
    if len(raw) % 32:
        raise ProofFormatError(field, f"{len(raw)} bytes is not a whole number of 32-byte hashes")
    if len(raw) > 32 * MAX_PROOF_STEPS:
        raise ProofFormatError(field, f"more than {MAX_PROOF_STEPS} hashes")
    return tuple([raw[i : i + 32] for i in range(0, len(raw), 32)])


def document(section: BatchSection, line: ProofLine) -> ProofDocument:
    """The ``chainsense.proof.v2`` document a batch line and a proof line make together."""
    computed = struct_hash(line.reading)
    return ProofDocument(
        reading=line.reading,
        signature=line.signature,
        domain=section.domain,
        schema=section.schema,
        struct_hash=computed,
        leaf=keccak256(keccak256(computed)),
        proof=line.path,
        root=section.root,
        anchor=section.anchor,
        reading_id=line.reading_id,
        batch_id=section.batch_id,
    )


def is_bundle_v2(first_line: bytes | str) -> bool:
    """Whether a file's first line says ``chainsense.bundle.v2`` (any JSON spelling of it)."""
    try:
        obj = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("format") == BUNDLE_FORMAT


def documents(lines: Iterable[bytes | str]) -> Iterator[ProofDocument | dict[str, Any]]:
    """Every entry of a bundle, in order: a v2 proof document per proof line, the pending
    object per pending line. :class:`ProofFormatError` (or ``ValueError`` for a line that is
    not JSON) at the first bad line."""
    section: BatchSection | None = None
    first = True
    for raw in lines:
        if not raw.strip():
            continue
        obj = _loads(raw)
        if first:
            _header(obj)
            first = False
            continue
        kind = _kind(obj)
        if kind == "batch":
            section = BatchSection.from_json(obj["batch"])
        elif kind == "pending":
            yield {"status": "pending", **obj["pending"]}
        else:
            line = parse_proof_line(obj)
            if section is None:
                raise ProofFormatError("proof", "a proof line before any batch line")
            yield document(section, line)


def _header(obj: Any) -> None:
    _fields("", obj, ("format",))
    if obj["format"] != BUNDLE_FORMAT:
        raise ProofFormatError("format", f"expected {BUNDLE_FORMAT!r}, got {obj['format']!r}")


def _kind(obj: Any) -> str:
    if type(obj) is dict and len(obj) == 1:
        if "batch" in obj:
            return "batch"
        if "pending" in obj and type(obj["pending"]) is dict:
            return "pending"
    return "proof"


def _loads(raw: bytes | str) -> Any:
    """orjson for strict JSON, ``json`` for the rest (as :func:`bundle._loads`)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def batch_offsets(path: str) -> list[int]:
    """The byte offsets of the file's batch lines, in order (a memchr-speed scan)."""
    found: list[int] = []
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return found
        with data:
            if data[: len(BATCH_PREFIX)] == BATCH_PREFIX:
                found.append(0)
            needle = b"\n" + BATCH_PREFIX
            at = data.find(needle)
            while at >= 0:
                found.append(at + 1)
                at = data.find(needle, at + 1)
    return found


# --- checking (the worker side) -----------------------------------------------------------------


class _Section:
    """A batch line, parsed and checked once: what each proof line of its section needs."""

    __slots__ = (
        "batch", "clean", "error", "key", "nmetrics", "schema_text", "shared", "verifier",
    )  # fmt: skip

    def __init__(self, raw: bytes | None, pins: Pins | None) -> None:
        self.batch: BatchSection | None = None
        self.error: str | None = None
        self.shared: tuple[Check, ...] = ()
        self.clean = False
        self.verifier: Any = None
        self.key: tuple[int, bytes, int] = (0, b"", 0)
        self.nmetrics = 0
        self.schema_text = ""
        if raw is None:
            self.error = "a proof line before any batch line"
            return
        try:
            obj = _loads(raw)
            if _kind(obj) != "batch":
                raise ProofFormatError("batch", "expected a batch line")
            batch = BatchSection.from_json(obj["batch"])
        except ValueError as exc:
            self.error = f"its batch line is not JSON: {exc}"
            return
        except ProofFormatError as exc:
            self.error = f"its batch line is not a v2 batch: {exc}"
            return
        self.batch = batch
        a = batch.anchor
        header, receipt = block_checks(a, batch.root)
        self.shared = (
            contracts_check(batch.domain, a, pins),
            domain_check(batch.domain, a.chain_id),
            header,
            receipt,
        )
        hashable, problem, _ = _schema_verdict(batch.schema)
        self.clean = all(c.ok for c in self.shared) and hashable and problem is None
        try:
            self.verifier = _verifier(batch.domain.chain_id, batch.domain.verifying_contract)
        except IdentityError:
            self.clean = False
        self.key = (a.block_number, a.block_hash, a.block_time)
        self.nmetrics = len(batch.schema.metrics)
        self.schema_text = "0x" + batch.schema.id.hex()


def check_lines(
    lines: Sequence[bytes], context: bytes | None, first: bool, pins: Pins | None
) -> ChunkResult:
    """A range of a v2 bundle's lines (``first``: the range starts the file), in the section of
    the batch line ``context`` (the nearest one above the range, ``None`` if the range starts
    with one). Returns a :class:`~chainsense.provenance.bundle.ChunkResult` whose indices are
    line positions in the range."""
    from chainsense.provenance.bundle import ChunkResult

    out = ChunkResult()
    out.span = len(lines)
    enabled = gc.isenabled()
    gc.disable()  # as bundle._check_lines: parsing makes no cycles
    try:
        _check(lines, context, first, pins, out)
    finally:
        if enabled:
            gc.enable()
    return out


def _check(
    lines: Sequence[bytes],
    context: bytes | None,
    first: bool,
    pins: Pins | None,
    out: ChunkResult,
) -> None:
    from chainsense.provenance.bundle import ProofResult

    section = _Section(context, pins)
    clean = out.clean
    others = out.others
    count = 0
    for index, raw in enumerate(lines):
        if index == 0 and first:
            try:
                _header(_loads(raw))
            except (ValueError, ProofFormatError) as exc:
                others.append(ProofResult(index, error=f"not a v2 bundle header: {exc}"))
                count += 1
            continue
        if raw[:9] == BATCH_PREFIX:
            section = _Section(raw, pins)
            continue
        if not raw.strip():
            continue
        count += 1
        try:
            obj = _loads(raw)
        except ValueError as exc:
            others.append(ProofResult(index, error=f"not JSON: {exc}"))
            continue
        device = _valid(obj, section) if section.clean else None
        if device is None:
            judged = _judged(index, obj, section)
            if type(judged) is not str:
                others.append(judged)
                continue
            device = judged
        number, block_hash, block_time = section.key
        key = (number, block_hash, device, block_time)
        found = clean.get(key)
        if found is None:
            clean[key] = [index]
        else:
            found.append(index)
    out.count = count


_PROOF_KEYS = frozenset(_PROOF)
_READING_KEYS = frozenset(("device", "seq", "timestamp_ms", "schema", "values", "signature"))
_DEVICE_BYTES: dict[str, tuple[str, bytes]] = {}
"""Device address texts the strict parser accepted: their EIP-55 form and 20 bytes."""
_UINT64 = 1 << 64
_INT64 = 1 << 63


def _uint64(text: Any) -> int | None:
    """A canonical uint64 decimal string's value, else None (the strict parser says why)."""
    if type(text) is str and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
        number = int(text)
        if number < _UINT64:
            return number
    return None


def _valid(obj: Any, section: _Section) -> str | None:
    """The fast path for a proof line of a section whose shared checks all passed: the device
    when the line is well formed exactly as :func:`parse_proof_line` demands and its
    ``schema``, ``signature`` and ``merkle-path`` checks pass; else ``None``, and the strict
    parser and the named checks judge the line (:func:`_judged`). It accepts nothing the
    strict path refuses: any doubt falls back."""
    if type(obj) is not dict or len(obj) != 1:
        return None
    body = obj.get("proof")
    if type(body) is not dict or body.keys() != _PROOF_KEYS:
        return None
    r = body["reading"]
    if type(r) is not dict or r.keys() != _READING_KEYS:
        return None
    device_text, schema_text, sig_text = r["device"], r["schema"], r["signature"]
    path_text, reading_id = body["merkle_proof"], body["reading_id"]
    if type(device_text) is not str or type(schema_text) is not str:
        return None
    known = _DEVICE_BYTES.get(device_text)
    seq, timestamp = _uint64(r["seq"]), _uint64(r["timestamp_ms"])
    if known is None or seq is None or timestamp is None:
        return None
    if reading_id is not None and _uint64(reading_id) is None:
        return None
    batch = section.batch
    assert batch is not None
    if schema_text[:2] != "0x" or schema_text.lower() != section.schema_text:
        return None
    texts = r["values"]
    if type(texts) is not list or len(texts) != section.nmetrics:
        return None
    words = []
    for text in texts:
        if type(text) is not str or not text.isascii():
            return None
        digits = text[1:] if text[:1] == "-" else text
        if not digits.isdigit() or (digits[0] == "0" and text != "0"):
            return None
        number = int(text)
        if not -_INT64 <= number < _INT64:
            return None
        words.append(number.to_bytes(32, "big", signed=True))
    if type(sig_text) is not str or len(sig_text) != 132 or sig_text[:2] != "0x":
        return None
    if type(path_text) is not str or path_text[:2] != "0x" or len(path_text) % 64 != 2:
        return None
    try:
        signature = bytes.fromhex(sig_text[2:])
        path = bytes.fromhex(path_text[2:])
    except ValueError:
        return None
    if len(signature) != 65 or 2 * len(path) != len(path_text) - 2:  # fromhex skips spaces
        return None
    if len(path) > 32 * MAX_PROOF_STEPS:
        return None
    k = keccak256
    computed = k(
        _STRUCT_PREFIX
        + known[1]
        + seq.to_bytes(32, "big")
        + timestamp.to_bytes(32, "big")
        + batch.schema.id
        + (k(b"".join(words)) if words else _EMPTY_VALUES_HASH)
    )
    try:
        if section.verifier.recover_struct_bytes(computed, signature) != known[1]:
            return None
    except IdentityError:
        return None
    node = k(k(computed))
    nodes = _NODES
    if len(nodes) > _NODES_MAX:
        nodes.clear()
    for at in range(0, len(path), 32):
        sibling = path[at : at + 32]
        pair = node + sibling if node < sibling else sibling + node
        found = nodes.get(pair)
        if found is None:
            found = nodes[pair] = k(pair)
        node = found
    if node != batch.root:
        return None
    return known[0]


def _judged(index: int, obj: Any, section: _Section) -> Any:
    """A proof line through the strict parser and every named check: a ``ProofResult``
    naming what is wrong, or the device (a str) when every check passed."""
    from chainsense.provenance.bundle import PENDING, ProofResult

    try:
        kind = _kind(obj)
        if kind == "pending":
            return ProofResult(index, error=PENDING)
        if kind == "batch":
            raise ProofFormatError("batch", 'a batch line must start with {"batch": (no space)')
        line = parse_proof_line(obj)
    except ProofFormatError as exc:
        return ProofResult(index, error=f"not a v2 bundle proof line: {exc}")
    batch = section.batch
    if batch is None:
        return ProofResult(index, error=str(section.error))
    reading = line.reading
    device = reading.device
    body = obj["proof"]["reading"]["device"]
    if len(_DEVICE_BYTES) >= 1 << 16:
        _DEVICE_BYTES.clear()
    _DEVICE_BYTES[body] = (device, address_bytes(device))
    computed = struct_hash(reading)
    signer = signer_of(batch.domain, line.signature, computed)
    leaf = keccak256(keccak256(computed))
    reached = walk_path(line.path, leaf)
    contracts, domain, header, receipt = section.shared
    checks = (
        contracts,
        schema_check(batch.schema, reading),
        domain,
        signature_check(batch.domain, device, line.signature, computed, signer),
        path_check(line.path, leaf, batch.root, reached),
        header,
        receipt,
    )
    failed = tuple(c for c in checks if not c.ok)
    if not failed:
        return device
    a = batch.anchor
    return ProofResult(
        index,
        failed,
        block_number=a.block_number,
        block_hash=a.block_hash,
        device=device,
        block_time=a.block_time,
    )
