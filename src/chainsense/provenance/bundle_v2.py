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
the section of any byte offset without parsing: :func:`batch_offsets`. The checks are in
:mod:`chainsense.provenance.bundle_check`.
"""

from __future__ import annotations

import bisect
import itertools
import json
import mmap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from chainsense.identity import Reading, keccak256, struct_hash
from chainsense.provenance.merkle import MerkleTree
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
    reading_json,
)

__all__ = [
    "BATCH_PREFIX",
    "BUNDLE_FORMAT",
    "HEADER",
    "BatchSection",
    "BundleWriter",
    "ProofLine",
    "batch_line",
    "batch_offsets",
    "bundle_lines",
    "complete_proof_line",
    "document",
    "documents",
    "is_bundle_v2",
    "keep_whole",
    "parse_proof_line",
    "proof_line",
    "says_complete",
    "schema_for",
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
            out.append(batch_line(self._section))
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
            yield batch_line(section)
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
    if not path:
        return complete_proof_line(doc.reading, doc.signature, doc.reading_id)
    body = {
        "reading": reading_json(doc.reading, doc.signature),
        "merkle_proof": "0x" + b"".join(doc.proof).hex(),
        "reading_id": None if doc.reading_id is None else str(doc.reading_id),
    }
    return _dumps({"proof": body})


def batch_line(section: BatchSection) -> str:
    """The batch line that starts ``section`` (it begins with :data:`BATCH_PREFIX`)."""
    return _dumps({"batch": section.to_json()})


def complete_proof_line(reading: Reading, signature: bytes, reading_id: int | None) -> str:
    """A proof line of a complete section: the reading, its signature and id, no path (what
    an export of whole batches writes for each reading, with no tree built)."""
    body = {
        "reading": reading_json(reading, signature),
        "merkle_proof": None,
        "reading_id": None if reading_id is None else str(reading_id),
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
    """``ranges`` (consecutive, covering the input) re-cut so that no complete section is cut:
    a complete section's proofs are checked together (its tree is rebuilt once). A cut that
    falls inside a complete section moves back to the section's batch line, so the section
    goes whole to the next range (a range left empty disappears); the ranges stay about as
    many as before, so the workers still share the file. Positions are byte offsets or line
    indices alike; section ``i`` spans ``starts[i]`` to the next start (or ``end``).

    >>> keep_whole([(0, 10), (10, 20), (20, 30)], [0, 5, 18], [True, True, False], 30)
    [(0, 5), (5, 20), (20, 30)]
    >>> keep_whole([(0, 10), (10, 20)], [0], [True], 20)
    [(0, 20)]
    """
    if not ranges:
        return []
    first, last = ranges[0][0], ranges[-1][1]
    cuts: list[int] = []
    for cut, _ in ranges[1:]:
        i = bisect.bisect_right(starts, cut) - 1
        if i >= 0 and complete[i] and starts[i] < cut:
            cut = starts[i]  # inside a complete section: cut at its batch line instead
        if cut > (cuts[-1] if cuts else first):
            cuts.append(cut)
    bounds = [first, *cuts, last]
    return list(itertools.pairwise(bounds))
