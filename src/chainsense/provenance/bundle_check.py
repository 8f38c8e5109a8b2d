"""Checking the lines of a ``chainsense.bundle.v2`` bundle (the worker side of
:mod:`chainsense.provenance.bundle`; the format is :mod:`chainsense.provenance.bundle_v2`).

A batch line is parsed and its shared checks (``contracts``, ``domain``, ``header``,
``receipt``, the schema blocks' hashes) run once (:class:`_Section`). Each proof line first
takes a fast path (:func:`_valid`): plain string tests, then the per-proof checks; a line that
passes everything is counted valid, anything else goes through the strict parser and the named
checks (:func:`_judged`), which produce the result. A complete section's ``merkle-path`` is
settled once, from the tree its readings build (:func:`_tree_verdict`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from chainsense.identity import KECCAK_BACKEND, IdentityError, keccak256, struct_hash
from chainsense.identity._address import address_bytes
from chainsense.identity.eip712 import _EMPTY_VALUES_HASH, _STRUCT_PREFIX
from chainsense.provenance.bundle_v2 import (
    _PROOF,
    BATCH_PREFIX,
    BatchSection,
    _header,
    _kind,
    _loads,
    parse_proof_line,
    schema_for,
)
from chainsense.provenance.merkle import MerkleTree
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import MAX_PROOF_STEPS, ProofFormatError
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

__all__ = ["check_lines"]


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
