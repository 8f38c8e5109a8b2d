"""Checking many proofs at once: a JSONL bundle (one proof document per line), an export zip (its
``proofs.jsonl``) or a single proof document.

Parsing and the offline checks run in a process pool on every core, in chunks of lines; each
proof's ``block`` check is settled once per distinct block: against the trusted block hashes
(offline), or by asking the RPC endpoint once per block height. With an RPC endpoint the pinned
contracts' code is checked once, and each distinct device's key record is read once
(``DeviceRegistry.keyOf``) and compared with each proof's anchor time, which is what
``verifyReadingAt`` decides for a signature that already recovered the device.
"""

from __future__ import annotations

import bisect
import gc
import json
import multiprocessing
import os
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chainsense.provenance.bundle_check import check_lines as check_v2_lines
from chainsense.provenance.bundle_v2 import batch_offsets, is_bundle_v2, keep_whole, says_complete
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument, ProofFormatError
from chainsense.provenance.verify import Check, offline_checks

__all__ = [
    "BundleResult",
    "ChunkResult",
    "ProofResult",
    "file_ranges",
    "jsonl_file",
    "read_bundle",
    "verify_file",
    "verify_lines",
]

_CHUNK = 500
PENDING = "pending: the reading was not anchored when the bundle was exported"


class BundleError(Exception):
    """The bundle cannot be read at all."""


def read_bundle(path: str) -> list[str]:
    """The proof documents of a file, one JSON text each: a zip's ``proofs.jsonl``, the lines of
    a JSONL file, or one JSON document (possibly spread over lines). ``-`` reads stdin."""
    import sys

    try:
        if path == "-":
            text = sys.stdin.read()
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as bundle:
                if "proofs.jsonl" not in bundle.namelist():
                    raise BundleError(f"{path} has no proofs.jsonl")
                text = bundle.read("proofs.jsonl").decode("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    stripped = text.strip()
    if stripped.startswith("{") and "\n" in stripped:
        try:
            json.loads(stripped)  # one pretty-printed document
        except ValueError:
            pass
        else:
            return [stripped]
    return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class ProofResult:
    """One proof's outcome without its ``block`` check, which the caller settles per block:
    only the checks that failed or did not run travel back from the worker."""

    index: int
    checks: tuple[Check, ...] = ()
    error: str | None = None
    block_number: int = 0
    block_hash: bytes = b""
    device: str = ""
    block_time: int = 0


# --- the worker side -----------------------------------------------------------------------

_PINS: Pins | None = None


def _init(pins: Pins | None) -> None:
    global _PINS
    _PINS = pins


def _loads(line: str) -> Any:
    """``json.loads``, faster: orjson decides a text that is strict JSON (the same value as
    ``json`` gives: duplicate keys keep the last), and ``json`` decides everything else (huge
    numbers, NaN, lone surrogates), so the outcome and the error message are json's."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


_Clean = tuple[int, bytes, str, int]
"""A proof whose every offline check passed: its block number and hash, device, anchor time."""


def _one(index: int, line: str, pins: Pins | None) -> ProofResult | _Clean:
    """One line: a :class:`ProofResult` when a check failed (or the line is no proof), else
    only what the caller still settles (:data:`_Clean`)."""
    try:
        obj = _loads(line)
        if isinstance(obj, dict) and obj.get("status") == "pending":
            return ProofResult(index, error=PENDING)
        doc = ProofDocument.from_json(obj)
    except ValueError as exc:  # not JSON
        return ProofResult(index, error=f"not JSON: {exc}")
    except ProofFormatError as exc:
        return ProofResult(index, error=f"not a v2 proof document: {exc}")
    anchor = doc.anchor
    checks = offline_checks(doc, pins)
    if all(c.ok for c in checks):
        return (anchor.block_number, anchor.block_hash, doc.reading.device, anchor.block_time)
    return ProofResult(
        index,
        tuple(c for c in checks if not c.ok),
        block_number=anchor.block_number,
        block_hash=anchor.block_hash,
        device=doc.reading.device,
        block_time=anchor.block_time,
    )


@dataclass(slots=True)
class ChunkResult:
    """What a worker sends back for a chunk of lines: compact, not one object per proof.

    ``clean`` groups the proofs whose every offline check passed by what the caller still has
    to settle for them (block number and hash, device, anchor time), each with its indices in
    the chunk; ``others`` holds the proofs that failed a check, did not parse or are pending."""

    count: int = 0
    clean: dict[tuple[int, bytes, str, int], list[int]] = field(default_factory=dict)
    others: list[ProofResult] = field(default_factory=list)
    span: int = 0
    """Lines the chunk covered, when its indices are line positions (a v2 bundle, whose batch
    lines are not proofs); 0 when each line is a proof (the indices count proofs)."""


def _check_lines(lines: Sequence[str]) -> ChunkResult:
    """The lines' results, with the cyclic garbage collector paused: parsing makes no cycles
    (JSON values are trees), yet allocating its objects sets off collections that walk every
    object the process holds (~10% of the time per proof); it runs again after the chunk."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _check_lines_gc_paused(lines)
    finally:
        if enabled:
            gc.enable()


def _check_lines_gc_paused(lines: Sequence[str]) -> ChunkResult:
    out = ChunkResult(len(lines))
    pins = _PINS
    clean = out.clean
    for index, line in enumerate(lines):
        key = _one(index, line, pins)
        if isinstance(key, ProofResult):
            out.others.append(key)
            continue
        found = clean.get(key)
        if found is None:
            clean[key] = [index]
        else:
            found.append(index)
    return out


def _chunk(job: tuple[int, Sequence[str]]) -> ChunkResult:
    """A chunk of lines the caller holds (passed to the worker)."""
    return _check_lines(job[1])


def _file_chunk(job: tuple[str, int, int]) -> ChunkResult:
    """A byte range of a JSONL file, read by the worker itself: the caller sends only the path
    and the offsets. The range starts and ends at line breaks, and its lines are split as
    :func:`read_bundle` splits the whole text."""
    path, start, end = job
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode("utf-8")
    return _check_lines([line for line in text.splitlines() if line.strip()])


# --- the caller side -----------------------------------------------------------------------


@dataclass
class BundleResult:
    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    """valid / invalid / incomplete / malformed / pending."""
    failures: list[dict[str, Any]] = field(default_factory=list)
    """The first failing proofs: line, status and the failed (or unchecked) checks."""
    failed_checks: Counter[str] = field(default_factory=Counter)
    blocks: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.counts["valid"] == self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "total": self.total,
            "valid": self.counts["valid"],
            "invalid": self.counts["invalid"],
            "incomplete": self.counts["incomplete"],
            "malformed": self.counts["malformed"],
            "pending": self.counts["pending"],
            "distinct_blocks": self.blocks,
            "failed_checks": dict(self.failed_checks),
            "notes": self.notes,
            "failures": self.failures,
        }


BlockJudge = Callable[[int, bytes], Check]
"""Settles the ``block`` check of a proof from its block number and hash."""
DeviceJudge = Callable[[str, int], Check | None]
"""With a chain, the ``device`` check of a proof from its device and anchor time."""


def trusted_judge(trusted: Collection[bytes] | None) -> BlockJudge:
    def judge(number: int, block_hash: bytes) -> Check:
        if trusted is None:
            return Check(
                "block",
                False,
                "not checked: no trusted block hash (--block-hash or --rpc)",
                skipped=True,
            )
        if block_hash in trusted:
            return Check("block", True, "a trusted block hash")
        return Check("block", False, f"block {number}'s hash is not a trusted block hash")

    return judge


def _pool(workers: int, pins: Pins | None) -> tuple[ProcessPoolExecutor, bool]:
    """A pool whose workers hold ``pins``; and whether they were forked from this process.

    Forking costs milliseconds and the workers inherit what is loaded (and what
    :func:`verify_lines` holds); starting a forkserver costs about half a second (it imports
    the checks). Forking a process that runs other threads is unsafe, so a process with more
    than one thread (or without ``fork``) uses the forkserver."""
    forked = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    if forked:
        context: Any = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["chainsense.provenance.bundle"])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init, initargs=(pins,))
    return pool, forked


_LINES: Sequence[str] = ()
"""The lines :func:`verify_lines` checks, inherited by forked workers (not sent to them)."""


def _inherited(job: tuple[int, int]) -> ChunkResult:
    return _check_lines(_LINES[job[0] : job[1]])


def _results(lines: Sequence[str], pins: Pins | None, workers: int) -> Iterator[ChunkResult]:
    global _LINES
    bounds = [(i, min(i + _CHUNK, len(lines))) for i in range(0, len(lines), _CHUNK)]
    if workers <= 1 or len(lines) <= _CHUNK:
        _init(pins)
        for start, end in bounds:
            yield _check_lines(lines[start:end])
        return
    _LINES = lines  # set before the workers fork
    try:
        pool, forked = _pool(workers, pins)
        with pool:
            if forked:
                yield from pool.map(_inherited, bounds)
            else:
                yield from pool.map(_chunk, [(s, lines[s:e]) for s, e in bounds])
    finally:
        _LINES = ()


def _v2_job(job: tuple[Sequence[bytes], bytes | None, bool]) -> ChunkResult:
    """Lines of a v2 bundle the caller holds, with the batch line of their section."""
    lines, context, first = job
    return check_v2_lines(lines, context, first, _PINS)


def _inherited_v2(job: tuple[int, int, int]) -> ChunkResult:
    start, end, context = job
    lines = [line.encode() for line in _LINES[start:end]]
    above = _LINES[context].encode() if context >= 0 else None
    return check_v2_lines(lines, above, start == 0, _PINS)


def _results_v2(
    lines: Sequence[str], batches: Sequence[int], pins: Pins | None, workers: int
) -> Iterator[ChunkResult]:
    """:func:`_results` for a v2 bundle: each chunk goes with the index of the batch line above
    it (-1 when it starts with one), so a chunk can start in the middle of a section."""
    global _LINES
    complete = [says_complete(lines[i]) for i in batches]
    cut = [(i, min(i + _CHUNK, len(lines))) for i in range(0, len(lines), _CHUNK)]
    bounds = []
    for start, end in keep_whole(cut, batches, complete, len(lines)):
        above = bisect.bisect_right(batches, start) - 1
        context = batches[above] if above >= 0 and batches[above] < start else -1
        bounds.append((start, end, context))
    if workers <= 1 or len(lines) <= _CHUNK:
        _init(pins)
        for job in bounds:
            yield _inherited_v2_local(lines, job)
        return
    _LINES = lines
    try:
        pool, forked = _pool(workers, pins)
        with pool:
            if forked:
                yield from pool.map(_inherited_v2, bounds)
            else:
                jobs = [
                    (
                        [x.encode() for x in lines[s:e]],
                        lines[c].encode() if c >= 0 else None,
                        s == 0,
                    )
                    for s, e, c in bounds
                ]
                yield from pool.map(_v2_job, jobs)
    finally:
        _LINES = ()


def _inherited_v2_local(lines: Sequence[str], job: tuple[int, int, int]) -> ChunkResult:
    start, end, context = job
    above = lines[context].encode() if context >= 0 else None
    return check_v2_lines([x.encode() for x in lines[start:end]], above, start == 0, _PINS)


def _file_chunk_v2(job: tuple[str, int, int, int]) -> ChunkResult:
    """A byte range of a v2 bundle file, read by the worker with the batch line of its section
    (``context``: its offset, or -1 when the range starts with a batch line)."""
    path, start, end, context = job
    above = None
    with open(path, "rb") as f:
        if context >= 0:
            f.seek(context)
            above = f.readline().rstrip(b"\n")
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return check_v2_lines(lines, above, start == 0, _PINS)


_FILE_CHUNK = 1 << 21
"""Bytes of a JSONL file per worker job (about 450 proofs)."""


def file_ranges(path: str, size: int = _FILE_CHUNK) -> list[tuple[int, int]]:
    """The file cut into byte ranges of about ``size`` bytes, each ending after a line break
    (or at the end of the file): a seek and one line read per range, not a scan of the file."""
    ranges: list[tuple[int, int]] = []
    with open(path, "rb") as f:
        total = f.seek(0, os.SEEK_END)
        start = 0
        while start < total:
            f.seek(min(start + size, total))
            end = f.tell() + len(f.readline()) if f.tell() < total else total
            ranges.append((start, end))
            start = end
    return ranges


def _file_is_v2(path: str) -> bool:
    with open(path, "rb") as f:
        return is_bundle_v2(f.readline())


def jsonl_file(path: str) -> bool:
    """Whether :func:`verify_file` can read ``path`` by ranges and find exactly the lines
    :func:`read_bundle` returns: a plain file (not a zip, not stdin) whose first non-blank
    line is a JSON document by itself (so the file is not one pretty-printed document)."""
    if path == "-" or not os.path.isfile(path) or zipfile.is_zipfile(path):
        return False
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    orjson.loads(raw)
                    return True
    except (OSError, ValueError):
        return False
    return False


def distinct_blocks(lines: Sequence[str]) -> dict[int, set[bytes]]:
    """Block number -> the block hashes the proofs name (a cheap scan, no full parse)."""
    found: dict[int, set[bytes]] = {}
    for line in lines:
        try:
            obj = json.loads(line)
            anchor = obj["batch"]["anchor"] if "batch" in obj else obj["anchor"]
            found.setdefault(int(anchor["block_number"]), set()).add(
                bytes.fromhex(anchor["block_hash"][2:])
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # malformed: the full parse reports it
    return found


class _Tally:
    """Folds chunk results, in bundle order, into a :class:`BundleResult`."""

    def __init__(
        self,
        result: BundleResult,
        block: BlockJudge,
        device: DeviceJudge | None,
        keep_failures: int,
    ) -> None:
        self.result = result
        self.block = block
        self.device = device
        self.keep = keep_failures
        self.done = 0
        self.lines = 0
        self.hashes: set[bytes] = set()

    def _settle(
        self, checks: Sequence[Check], number: int, block_hash: bytes, device: str, at: int
    ) -> tuple[str, list[str], str, list[Check]]:
        self.hashes.add(block_hash)
        settled = [*checks, self.block(number, block_hash)]
        if self.device is not None:
            found = self.device(device, at)
            if found is not None:
                settled.append(found)
        failed = [c for c in settled if not c.ok and not c.skipped]
        skipped = [c for c in settled if c.skipped]
        status = "invalid" if failed else "incomplete" if skipped else "valid"
        names = [c.name for c in failed or skipped]
        detail = "; ".join(f"{c.name}: {c.detail}" for c in failed or skipped)
        return status, names, detail, failed

    def add(self, chunk: ChunkResult) -> None:
        result = self.result
        entries: list[tuple[int, str, list[str], str]] = []
        for (number, block_hash, device, at), indices in chunk.clean.items():
            status, names, detail, failed = self._settle((), number, block_hash, device, at)
            result.counts[status] += len(indices)
            for c in failed:
                result.failed_checks[c.name] += len(indices)
            if status != "valid":
                entries.extend((i, status, names, detail) for i in indices)
        for item in chunk.others:
            if item.error == PENDING:
                status, names, detail = "pending", [], PENDING
            elif item.error is not None:
                status, names, detail = "malformed", ["format"], item.error
                result.failed_checks["format"] += 1
            else:
                status, names, detail, failed = self._settle(
                    item.checks, item.block_number, item.block_hash, item.device, item.block_time
                )
                for c in failed:
                    result.failed_checks[c.name] += 1
            result.counts[status] += 1
            if status != "valid":
                entries.append((item.index, status, names, detail))
        room = self.keep - len(result.failures)
        if entries and room > 0:
            entries.sort(key=lambda e: e[0])
            result.failures.extend(
                {"line": self.lines + i + 1, "status": status, "checks": names, "detail": detail}
                for i, status, names, detail in entries[:room]
            )
        self.done += chunk.count
        self.lines += chunk.span or chunk.count


def verify_lines(
    lines: Sequence[str],
    *,
    pins: Pins | None,
    block: BlockJudge,
    device: DeviceJudge | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_failures: int = 50,
) -> BundleResult:
    """Verify every proof of a bundle; ``block`` (and ``device``) settle the chain-side checks,
    once per distinct value (they are lookups: the same arguments give the same check)."""
    workers = workers or os.cpu_count() or 1
    v2 = bool(lines) and is_bundle_v2(lines[0])
    if v2:
        batches = [i for i, line in enumerate(lines) if line.startswith('{"batch":')]
        total = len(lines) - len(batches) - 1
        chunks = _results_v2(lines, batches, pins, workers)
    else:
        total = len(lines)
        chunks = _results(lines, pins, workers)
    result = BundleResult(total=total)
    tally = _Tally(result, block, device, keep_failures)
    step = 0
    for chunk in chunks:
        tally.add(chunk)
        if progress is not None and (tally.done // 5000 > step or tally.done == total):
            step = tally.done // 5000
            progress(tally.done, total)
    result.total = tally.done
    result.blocks = len(tally.hashes)
    return result


def verify_file(
    path: str,
    *,
    pins: Pins | None,
    block: BlockJudge,
    device: DeviceJudge | None = None,
    workers: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    keep_failures: int = 50,
) -> BundleResult:
    """:func:`verify_lines` for a JSONL file (see :func:`jsonl_file`) that each worker reads
    by byte ranges itself: nothing but offsets and compact results cross the process pipes.
    The total is known at the end: ``progress`` gets the proofs checked, the bytes read
    and the file's size."""
    result = BundleResult()
    tally = _Tally(result, block, device, keep_failures)
    ranges = file_ranges(path)
    size = ranges[-1][1] if ranges else 0
    workers = workers or os.cpu_count() or 1
    jobs: list[Any]
    work: Callable[[Any], ChunkResult]
    if _file_is_v2(path):
        offsets = batch_offsets(path)
        with open(path, "rb") as f:
            complete = []
            for offset in offsets:
                f.seek(offset)
                complete.append(says_complete(f.readline()))
        ranges = keep_whole(ranges, offsets, complete, size)
        jobs = []
        for start, end in ranges:
            above = bisect.bisect_right(offsets, start) - 1
            context = offsets[above] if above >= 0 and offsets[above] < start else -1
            jobs.append((path, start, end, context))
        work = _file_chunk_v2
    else:
        jobs = [(path, start, end) for start, end in ranges]
        work = _file_chunk
    try:
        if workers <= 1 or len(jobs) <= 1:
            _init(pins)
            chunks: Iterator[ChunkResult] = map(work, jobs)
            for (_, end), chunk in zip(ranges, chunks, strict=True):
                tally.add(chunk)
                if progress is not None:
                    progress(tally.done, end, size)
        else:
            pool, _ = _pool(workers, pins)
            with pool:
                for (_, end), chunk in zip(ranges, pool.map(work, jobs), strict=True):
                    tally.add(chunk)
                    if progress is not None:
                        progress(tally.done, end, size)
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    result.total = tally.done
    result.blocks = len(tally.hashes)
    return result
