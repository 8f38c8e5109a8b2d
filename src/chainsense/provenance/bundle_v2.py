"""The bundle format ``chainsense.bundle.v2``: many proofs in JSON lines, the parts a batch shares
written once (specified in ``docs/proof-format.md``, section 9)::

    {"format":"chainsense.bundle.v2"}
    {"batch":{"root","domain","schemas","anchor","batch_id","complete"}}   shared parts
    {"proof":{"reading","merkle_proof","reading_id"}}               one per reading
    {"proof":{...}}
    {"pending":{"reading_id","state","batch_id",...}}                not anchored yet (not checked)
    {"batch":{...}}                                                  the next section
    ...

A proof line belongs to the nearest batch line above it. Together they hold exactly what a
``chainsense.proof.v2`` document holds, less ``struct_hash`` and ``leaf``, which the verifier
computes from the reading (:func:`document` rebuilds the v2 document). The ``contracts``,
``domain``, ``header`` and ``receipt`` checks and the schema blocks' hashes are settled once
per batch line; ``schema``, ``signature`` and ``merkle-path`` run for every proof line (a
proof's schema block is the one of the batch line whose id its ``reading.schema`` names). When
the batch line says ``"complete": true``, the section holds every reading of the batch and its
proof lines carry no path: the tree is rebuilt once from them.

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

from chainsense.identity import KECCAK_BACKEND, IdentityError, keccak256, struct_hash
from chainsense.identity._address import address_bytes
from chainsense.identity.eip712 import _EMPTY_VALUES_HASH, _STRUCT_PREFIX
from chainsense.provenance.merkle import MerkleTree
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
    _list,
    _optional_uint,
    _reading,
    _remembered,
    _schema_block,
)
from chainsense.provenance.verify import (
    _NODES,
    _NODES_MAX,
    OFFLINE_CHECKS,
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
    "keep_whole",
    "says_complete",
]

BUNDLE_FORMAT = "chainsense.bundle.v2"
HEADER = b'{"format":"chainsense.bundle.v2"}'
BATCH_PREFIX = b'{"batch":'
_BATCH = ("root", "domain", "schemas", "anchor", "batch_id", "complete")
MAX_SCHEMAS = 256
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
    schemas: tuple[SchemaRef, ...]
    """The schema blocks of the section's readings (each reading names its own by id)."""
    anchor: AnchorRef
    batch_id: int | None
    complete: bool = False
    """The section holds every leaf of the batch: its proof lines carry no Merkle path
    (``merkle_proof`` is null) and the verifier rebuilds the tree from them once."""

    def to_json(self) -> dict[str, Any]:
        return {
            "root": "0x" + self.root.hex(),
            "domain": self.domain.to_json(),
            "schemas": [schema.to_json() for schema in self.schemas],
            "anchor": self.anchor.to_json(),
            "batch_id": None if self.batch_id is None else str(self.batch_id),
            "complete": self.complete,
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
                schemas=_schemas(inner["schemas"]),
                anchor=_remembered(
                    _ANCHORS_V2, "anchor", inner["anchor"], _ANCHOR, _anchor, "block_hash"
                ),
                batch_id=_optional_uint("batch.batch_id", inner["batch_id"]),
                complete=_bool("batch.complete", inner["complete"]),
            )
        except ProofFormatError as exc:
            raise _under("batch", exc) from None


def _schemas(value: Any) -> tuple[SchemaRef, ...]:
    items = _list("schemas", value, MAX_SCHEMAS)
    if not items:
        raise ProofFormatError("schemas", "expected at least one schema block")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_schema_block(item))
        except ProofFormatError as exc:
            field = exc.field.replace("schema", f"schemas[{i}]", 1)
            raise ProofFormatError(field, exc.detail) from None
    return tuple(out)


def schema_for(schemas: Sequence[SchemaRef], schema_id: bytes) -> SchemaRef:
    """The schema block a reading names (``schema_id``); the first one if none has that id (the
    ``schema`` check then fails: reading.schema is not schema.id)."""
    for schema in schemas:
        if schema.id == schema_id:
            return schema
    return schemas[0]


def _bool(field: str, value: Any) -> bool:
    if type(value) is not bool:
        raise ProofFormatError(field, "expected true or false")
    return value


def _under(parent: str, exc: ProofFormatError) -> ProofFormatError:
    field = exc.field if exc.field.startswith(parent + ".") else f"{parent}.{exc.field}"
    return ProofFormatError(field, exc.detail)


def _section_of(doc: ProofDocument, schemas: tuple[SchemaRef, ...]) -> BatchSection:
    return BatchSection(doc.root, doc.domain, schemas, doc.anchor, doc.batch_id, False)


class BundleWriter:
    """Writes a bundle one item at a time (for streaming): :meth:`lines` gives the lines an
    item adds, the format line first. A batch line (with the proof's schema) is written
    whenever a proof's batch, domain or anchor differs from the previous proof's, or its
    schema is not the current section's."""

    def __init__(self) -> None:
        self._started = False
        self._section: BatchSection | None = None

    def lines(self, item: ProofDocument | Mapping[str, Any]) -> list[str]:
        out = [] if self._started else [HEADER.decode()]
        self._started = True
        if not isinstance(item, ProofDocument):
            out.append(_pending_line(item))
            return out
        current = self._section
        if (
            current is None
            or item.schema not in current.schemas
            or _section_of(item, current.schemas) != current
        ):
            self._section = _section_of(item, (item.schema,))
            out.append(_dumps({"batch": self._section.to_json()}))
        out.append(proof_line(item))
        return out

    def finish(self) -> list[str]:
        """The format line, when no item was written (an empty bundle)."""
        started, self._started = self._started, True
        return [] if started else [HEADER.decode()]


def _pending_line(item: Mapping[str, Any]) -> str:
    body = dict(item)
    body.pop("status", None)
    return _dumps({"pending": body})


def bundle_lines(
    items: Iterable[ProofDocument | Mapping[str, Any]], *, complete: bool = False
) -> Iterator[str]:
    """The lines (without line breaks) of a bundle of ``items``: proof documents, and pending
    answers (their JSON objects) for readings not anchored yet (see :class:`BundleWriter`).

    ``complete``: the documents are whole batches (every reading of each batch, a batch's
    readings together): each batch gets one batch line with ``"complete": true`` and its
    proof lines no path. A section that does not hold its whole batch fails ``merkle-path``
    for each of its proofs."""
    if not complete:
        writer = BundleWriter()
        for item in items:
            yield from writer.lines(item)
        yield from writer.finish()
        return
    yield HEADER.decode()
    group: list[ProofDocument] = []

    def flush() -> Iterator[str]:
        if group:
            schemas = tuple(dict.fromkeys(doc.schema for doc in group))
            first = group[0]
            section = BatchSection(
                first.root, first.domain, schemas, first.anchor, first.batch_id, True
            )
            yield _dumps({"batch": section.to_json()})
            yield from (proof_line(doc, path=False) for doc in group)
            group.clear()

    for item in items:
        if not isinstance(item, ProofDocument):
            yield _pending_line(item)
            continue
        if group and (item.root, item.anchor, item.domain) != (
            group[0].root, group[0].anchor, group[0].domain,
        ):  # fmt: skip
            yield from flush()
        group.append(item)
    yield from flush()


def proof_line(doc: ProofDocument, *, path: bool = True) -> str:
    full = doc.to_json()
    body = {
        "reading": full["reading"],
        "merkle_proof": "0x" + b"".join(doc.proof).hex() if path else None,
        "reading_id": full["reading_id"],
    }
    return _dumps({"proof": body})


@dataclass(frozen=True, slots=True)
class ProofLine:
    reading: Any
    signature: bytes
    path: tuple[bytes, ...] | None
    reading_id: int | None


def parse_proof_line(obj: Any, complete: bool = False) -> ProofLine:
    """The object of a proof line (the whole line, ``{"proof": {...}}``), in a section that
    is ``complete`` (no path: ``merkle_proof`` is null) or not (a packed path)."""
    try:
        body = _fields("", obj, ("proof",))["proof"]
        p = _fields("proof", body, _PROOF)
        reading, signature = _reading(p["reading"])
        path: tuple[bytes, ...] | None = None
        if not complete:
            path = _packed("merkle_proof", p["merkle_proof"])
        elif p["merkle_proof"] is not None:
            raise ProofFormatError("merkle_proof", "must be null: the batch line says complete")
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


def document(
    section: BatchSection, line: ProofLine, tree: MerkleTree | None = None
) -> ProofDocument:
    """The ``chainsense.proof.v2`` document a batch line and a proof line make together (in a
    complete section, the path comes from ``tree``, built from the section's readings)."""
    computed = struct_hash(line.reading)
    path = line.path
    if path is None:
        assert tree is not None, "a complete section's proofs need its tree"
        path = tuple(tree.proof(computed))
    return ProofDocument(
        reading=line.reading,
        signature=line.signature,
        domain=section.domain,
        schema=schema_for(section.schemas, line.reading.schema),
        struct_hash=computed,
        leaf=keccak256(keccak256(computed)),
        proof=path,
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
    not JSON) at the first bad line. The documents of a complete section carry the paths of
    the tree its readings build (which lead to the batch's root only if it holds them all)."""
    section: BatchSection | None = None
    held: list[ProofLine] = []
    first = True

    def flush() -> Iterator[ProofDocument]:
        if section is not None and held:
            tree = MerkleTree([struct_hash(x.reading) for x in held])
            yield from (document(section, x, tree) for x in held)
        held.clear()

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
            yield from flush()
            section = BatchSection.from_json(obj["batch"])
        elif kind == "pending":
            yield {"status": "pending", **obj["pending"]}
        else:
            line = parse_proof_line(obj, section is not None and section.complete)
            if section is None:
                raise ProofFormatError("proof", "a proof line before any batch line")
            if section.complete:
                held.append(line)
            else:
                yield document(section, line)
    yield from flush()


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


def says_complete(line: bytes | str) -> bool:
    """Whether a batch line says its section is complete (a malformed line: no)."""
    try:
        obj = orjson.loads(line)
        return obj["batch"]["complete"] is True
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False


def keep_whole(
    ranges: Sequence[tuple[int, int]], starts: Sequence[int], complete: Sequence[bool], end: int
) -> list[tuple[int, int]]:
    """``ranges`` (consecutive, covering the input) merged so that no complete section is cut:
    a complete section's proofs are checked together (its tree is rebuilt once). Positions
    are byte offsets or line indices alike; section ``i`` spans ``starts[i]`` to the next
    start (or ``end``)."""
    inside = []
    for i, start in enumerate(starts):
        if complete[i]:
            inside.append((start, starts[i + 1] if i + 1 < len(starts) else end))
    out: list[tuple[int, int]] = []
    for start, stop in ranges:
        if out and any(a < start < b for a, b in inside):
            out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


# --- checking (the worker side) -----------------------------------------------------------------


class _Section:
    """A batch line, parsed and checked once: what each proof line of its section needs."""

    __slots__ = (
        "batch", "clean", "complete", "error", "key", "schema_texts", "shared", "verifier",
    )  # fmt: skip

    def __init__(self, raw: bytes | None, pins: Pins | None) -> None:
        self.batch: BatchSection | None = None
        self.error: str | None = None
        self.shared: tuple[Check, ...] = ()
        self.clean = False
        self.verifier: Any = None
        self.key: tuple[int, bytes, int] = (0, b"", 0)
        self.schema_texts: dict[str, tuple[bytes, int]] = {}
        self.complete = False
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
        self.clean = all(c.ok for c in self.shared)
        for schema in batch.schemas:
            hashable, problem, _ = _schema_verdict(schema)
            if hashable and problem is None:  # a proof naming another schema goes the slow way
                self.schema_texts["0x" + schema.id.hex()] = (schema.id, len(schema.metrics))
        try:
            self.verifier = _verifier(batch.domain.chain_id, batch.domain.verifying_contract)
        except IdentityError:
            self.clean = False
        self.key = (a.block_number, a.block_hash, a.block_time)
        self.complete = batch.complete


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
    if section.batch is not None and section.batch.complete:
        raise AssertionError("a complete section was split between jobs")
    clean = out.clean
    others = out.others
    held: list[tuple[int, Any, bytes | None]] = []
    """A complete section's proofs: the device (all checks but merkle-path passed) or the
    result so far, and the struct hash (None for a line that is no proof)."""
    count = 0

    def add(index: int, device: str) -> None:
        number, block_hash, block_time = section.key
        key = (number, block_hash, device, block_time)
        found = clean.get(key)
        if found is None:
            clean[key] = [index]
        else:
            found.append(index)

    def settle() -> None:
        if held:
            for index, result in _tree_verdict(section, held):
                if type(result) is str:
                    add(index, result)
                else:
                    others.append(result)
            held.clear()

    for index, raw in enumerate(lines):
        if index == 0 and first:
            try:
                _header(_loads(raw))
            except (ValueError, ProofFormatError) as exc:
                others.append(ProofResult(index, error=f"not a v2 bundle header: {exc}"))
                count += 1
            continue
        if raw[:9] == BATCH_PREFIX:
            settle()
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
        found = _valid(obj, section) if section.clean else None
        if found is not None:
            result: Any = found[0]
            computed: bytes | None = found[1]
        else:
            result, computed = _judged(index, obj, section)
        if section.complete:
            held.append((index, result, computed))
        elif type(result) is str:
            add(index, result)
        else:
            others.append(result)
    settle()
    out.count = count


def _tree_verdict(
    section: _Section, held: list[tuple[int, Any, bytes | None]]
) -> Iterator[tuple[int, Any]]:
    """A complete section's ``merkle-path`` check, once: the tree its readings build must have
    the batch's root. If it does not, every proof of the section fails the check (one of
    them was altered, added or left out; the other checks say which, when they can)."""
    from chainsense.provenance.bundle import ProofResult

    batch = section.batch
    assert batch is not None
    hashes = [h for _, _, h in held if h is not None]
    built = MerkleTree(hashes).root if hashes else bytes(32)
    if built == batch.root:
        yield from ((index, result) for index, result, _ in held)
        return
    failed = Check(
        "merkle-path",
        False,
        f"the section's {len(hashes)} readings build the root {_short(built)}, not "
        f"{_short(batch.root)}: a reading was altered, added or left out, or the section "
        "does not hold the whole batch",
    )
    a = batch.anchor
    for index, result, _ in held:
        if type(result) is str:
            yield (
                index,
                ProofResult(
                    index,
                    (failed,),
                    block_number=a.block_number,
                    block_hash=a.block_hash,
                    device=result,
                    block_time=a.block_time,
                ),
            )
        elif result.error is None:
            checks = sorted((*result.checks, failed), key=lambda c: _ORDER[c.name])
            yield (
                index,
                ProofResult(
                    index,
                    tuple(checks),
                    block_number=result.block_number,
                    block_hash=result.block_hash,
                    device=result.device,
                    block_time=result.block_time,
                ),
            )
        else:
            yield index, result


_ORDER = {name: i for i, name in enumerate(OFFLINE_CHECKS)}


def _short(value: bytes) -> str:
    text = value.hex()
    return f"0x{text[:8]}…{text[-6:]}"


_PROOF_KEYS = frozenset(_PROOF)
_READING_KEYS = frozenset(("device", "seq", "timestamp_ms", "schema", "values", "signature"))
_DEVICE_BYTES: dict[str, tuple[str, bytes]] = {}
"""Device address texts the strict parser accepted: their EIP-55 form and 20 bytes."""
_UINT64 = 1 << 64
_INT64 = 1 << 63


class _Digest:
    """``keccak256(data)`` behind the ``hashlib`` shape ``_sha(data).digest()``."""

    __slots__ = ("_value",)

    def __init__(self, data: bytes) -> None:
        self._value = keccak256(data)

    def digest(self) -> bytes:
        return self._value


_sha: Any = _Digest
if KECCAK_BACKEND == "pysha3":  # the C hash itself: no Python frame around each of its calls
    import sha3  # type: ignore[import-untyped]

    _sha = sha3.keccak_256


def _uint64(text: Any) -> int | None:
    """A canonical uint64 decimal string's value, else None (the strict parser says why)."""
    if type(text) is str and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
        number = int(text)
        if number < _UINT64:
            return number
    return None


def _valid(obj: Any, section: _Section) -> tuple[str, bytes] | None:
    """The fast path for a proof line of a section whose shared checks all passed: the device
    and the struct hash when the line is well formed exactly as :func:`parse_proof_line`
    demands and its ``schema``, ``signature`` and ``merkle-path`` checks pass (in a complete
    section, ``merkle-path`` is the section's, settled later); else ``None``, and the strict
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
    if known is None:
        return None
    seq_text, time_text = r["seq"], r["timestamp_ms"]
    if (
        type(seq_text) is not str
        or type(time_text) is not str
        or not (seq_text + time_text).isascii()
        or not seq_text.isdigit()
        or not time_text.isdigit()
        or (seq_text[0] == "0" and seq_text != "0")
        or (time_text[0] == "0" and time_text != "0")
    ):
        return None
    seq, timestamp = int(seq_text), int(time_text)
    if seq >= _UINT64 or timestamp >= _UINT64:
        return None
    if reading_id is not None and _uint64(reading_id) is None:
        return None
    batch = section.batch
    assert batch is not None
    schema = section.schema_texts.get(schema_text.lower()) if schema_text[:2] == "0x" else None
    if schema is None:
        return None
    texts = r["values"]
    if type(texts) is not list or len(texts) != schema[1]:
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
    complete = section.complete
    if complete:
        if path_text is not None:
            return None
        path_text = "0x"
    elif type(path_text) is not str or path_text[:2] != "0x" or len(path_text) % 64 != 2:
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
    sha = _sha
    words_hash = sha(b"".join(words)).digest() if words else _EMPTY_VALUES_HASH
    computed = sha(
        _STRUCT_PREFIX
        + known[1]
        + seq.to_bytes(32, "big")
        + timestamp.to_bytes(32, "big")
        + schema[0]
        + words_hash
    ).digest()
    try:
        if section.verifier.recover_struct_bytes(computed, signature) != known[1]:
            return None
    except IdentityError:
        return None
    if complete:
        return known[0], computed
    node = sha(sha(computed).digest()).digest()
    nodes = _NODES
    if len(nodes) > _NODES_MAX:
        nodes.clear()
    for at in range(0, len(path), 32):
        sibling = path[at : at + 32]
        pair = node + sibling if node < sibling else sibling + node
        found = nodes.get(pair)
        if found is None:
            found = nodes[pair] = sha(pair).digest()
        node = found
    if node != batch.root:
        return None
    return known[0], computed


def _judged(index: int, obj: Any, section: _Section) -> tuple[Any, bytes | None]:
    """A proof line through the strict parser and every named check: a ``ProofResult``
    naming what is wrong, or the device (a str) when every check passed (in a complete
    section, every check but ``merkle-path``); and the struct hash, if the line is a proof."""
    from chainsense.provenance.bundle import PENDING, ProofResult

    try:
        kind = _kind(obj)
        if kind == "pending":
            return ProofResult(index, error=PENDING), None
        if kind == "batch":
            raise ProofFormatError("batch", 'a batch line must start with {"batch": (no space)')
        line = parse_proof_line(obj, section.complete)
    except ProofFormatError as exc:
        return ProofResult(index, error=f"not a v2 bundle proof line: {exc}"), None
    batch = section.batch
    if batch is None:
        return ProofResult(index, error=str(section.error)), None
    reading = line.reading
    device = reading.device
    body = obj["proof"]["reading"]["device"]
    if len(_DEVICE_BYTES) >= 1 << 16:
        _DEVICE_BYTES.clear()
    _DEVICE_BYTES[body] = (device, address_bytes(device))
    computed = struct_hash(reading)
    signer = signer_of(batch.domain, line.signature, computed)
    contracts, domain, header, receipt = section.shared
    checks = [
        contracts,
        schema_check(schema_for(batch.schemas, reading.schema), reading),
        domain,
        signature_check(batch.domain, device, line.signature, computed, signer),
    ]
    if line.path is not None:  # a complete section's path is checked once for the section
        leaf = keccak256(keccak256(computed))
        checks.append(path_check(line.path, leaf, batch.root, walk_path(line.path, leaf)))
    checks += (header, receipt)
    failed = tuple(c for c in checks if not c.ok)
    if not failed:
        return device, computed
    a = batch.anchor
    result = ProofResult(
        index,
        failed,
        block_number=a.block_number,
        block_hash=a.block_hash,
        device=device,
        block_time=a.block_time,
    )
    return result, computed
