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

import json
import multiprocessing
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument, ProofFormatError
from chainsense.provenance.verify import Check, offline_checks

__all__ = ["BundleResult", "ProofResult", "read_bundle", "verify_lines"]

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


def _one(index: int, line: str, pins: Pins | None) -> ProofResult:
    try:
        obj = _loads(line)
        if isinstance(obj, dict) and obj.get("status") == "pending":
            return ProofResult(index, error=PENDING)
        doc = ProofDocument.from_json(obj)
    except ValueError as exc:  # not JSON
        return ProofResult(index, error=f"not JSON: {exc}")
    except ProofFormatError as exc:
        return ProofResult(index, error=f"not a v2 proof document: {exc}")
    return ProofResult(
        index,
        tuple(c for c in offline_checks(doc, pins) if not c.ok),
        block_number=doc.anchor.block_number,
        block_hash=doc.anchor.block_hash,
        device=doc.reading.device,
        block_time=doc.anchor.block_time,
    )


def _chunk(job: tuple[int, Sequence[str]]) -> list[ProofResult]:
    start, lines = job
    return [_one(start + i, line, _PINS) for i, line in enumerate(lines)]


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


def _results(lines: Sequence[str], pins: Pins | None, workers: int) -> Iterator[ProofResult]:
    jobs = [(i, lines[i : i + _CHUNK]) for i in range(0, len(lines), _CHUNK)]
    if workers <= 1 or len(lines) <= _CHUNK:
        _init(pins)
        for job in jobs:
            yield from _chunk(job)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["chainsense.provenance.bundle"])
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init, initargs=(pins,)
    ) as pool:
        for chunk in pool.map(_chunk, jobs):
            yield from chunk


def distinct_blocks(lines: Sequence[str]) -> dict[int, set[bytes]]:
    """Block number -> the block hashes the proofs name (a cheap scan, no full parse)."""
    found: dict[int, set[bytes]] = {}
    for line in lines:
        try:
            anchor = json.loads(line)["anchor"]
            found.setdefault(int(anchor["block_number"]), set()).add(
                bytes.fromhex(anchor["block_hash"][2:])
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # malformed: the full parse reports it
    return found


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
    """Verify every proof of a bundle; ``block`` (and ``device``) settle the chain-side checks."""
    result = BundleResult(total=len(lines))
    workers = workers or os.cpu_count() or 1
    blocks: set[bytes] = set()
    for done, item in enumerate(_results(lines, pins, workers), 1):
        if item.error == PENDING:
            status, names, detail = "pending", [], PENDING
        elif item.error is not None:
            status, names = "malformed", ["format"]
            result.failed_checks["format"] += 1
            detail = item.error
        else:
            blocks.add(item.block_hash)
            checks = [*item.checks, block(item.block_number, item.block_hash)]
            if device is not None:
                found = device(item.device, item.block_time)
                if found is not None:
                    checks.append(found)
            failed = [c for c in checks if not c.ok and not c.skipped]
            skipped = [c for c in checks if c.skipped]
            status = "invalid" if failed else "incomplete" if skipped else "valid"
            names = [c.name for c in failed or skipped]
            for c in failed:
                result.failed_checks[c.name] += 1
            detail = "; ".join(f"{c.name}: {c.detail}" for c in failed or skipped)
        result.counts[status] += 1
        if status != "valid" and len(result.failures) < keep_failures:
            result.failures.append(
                {"line": item.index + 1, "status": status, "checks": names, "detail": detail}
            )
        if progress is not None and (done % 5000 == 0 or done == len(lines)):
            progress(done, len(lines))
    result.blocks = len(blocks)
    return result
