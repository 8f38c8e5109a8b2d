"""What ``chainsense verify`` does, apart from parsing its options: read the pins and the trusted
block hashes, check one proof (every check shown) or a bundle (progress on stderr, a summary),
and choose the exit code.

Exit codes: 0 valid (every proof, every check); 1 a check failed (or a bundle line is not a
proof); 2 the input, the deployment or a block hash cannot be read; 3 incomplete: nothing failed,
but the contracts were not pinned or no block hash was trusted, so nothing is claimed.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument, ProofFormatError
from chainsense.provenance.verify import Verdict, verify_offline

__all__ = ["UsageError", "VerifyOptions", "load_pins", "load_trusted", "render_verdict", "run"]

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_MARKS = {"ok": "✓", "failed": "✗", "skipped": "·"}
_ASCII_MARKS = {"ok": "OK", "failed": "FAIL", "skipped": "--"}
EXIT = {"valid": 0, "invalid": 1, "incomplete": 3}


class UsageError(Exception):
    """Bad input: exit 2 with this message."""


@dataclass(frozen=True)
class VerifyOptions:
    source: str
    deployment: Path | None = None
    chain_id: int | None = None
    registry: str | None = None
    anchor: str | None = None
    block_hashes: tuple[str, ...] = ()
    rpc: str | None = None
    as_json: bool = False
    timeout: float = 10.0
    workers: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def coverage(self) -> bool:
        """Whether the bundle must hold every batch anchored in [since, until)."""
        return self.since_ms is not None or self.until_ms is not None


def load_pins(options: VerifyOptions) -> Pins | None:
    explicit = (options.chain_id, options.registry, options.anchor)
    if options.deployment is not None:
        if any(x is not None for x in explicit):
            raise UsageError("give --deployment or --chain-id/--registry/--anchor, not both")
        try:
            document = json.loads(options.deployment.read_text(encoding="utf-8"))
            return Pins.from_document(document, source=str(options.deployment))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the deployment {options.deployment}: {exc}") from None
        except ProofFormatError as exc:
            raise UsageError(f"{options.deployment} is not a deployment document: {exc}") from None
    if all(x is None for x in explicit):
        return None
    if any(x is None for x in explicit):
        raise UsageError("explicit pins need all of --chain-id, --registry and --anchor")
    for flag, value in (("--registry", options.registry), ("--anchor", options.anchor)):
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", str(value)):
            raise UsageError(f"{flag} {value!r} is not an address")
    return Pins(int(str(options.chain_id)), str(options.registry), str(options.anchor))


def load_trusted(values: tuple[str, ...]) -> frozenset[bytes] | None:
    """Block hashes given as hashes or as files of them (one per line, or any text holding
    them, ``#`` comments allowed)."""
    if not values:
        return None
    found: set[bytes] = set()
    for value in values:
        if _HASH.fullmatch(value):
            found.add(bytes.fromhex(value[2:]))
            continue
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"--block-hash {value}: not a 32-byte hash nor a file: {exc}"
            ) from None
        hashes = [h for line in text.splitlines() for h in _HASH.findall(line.split("#", 1)[0])]
        if not hashes:
            raise UsageError(f"--block-hash {value}: the file holds no 0x 32-byte hash")
        found.update(bytes.fromhex(h[2:]) for h in hashes)
    return frozenset(found)


def _marks(stream: TextIO) -> dict[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "".join(_MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return _ASCII_MARKS
    return _MARKS


def render_verdict(doc: ProofDocument, verdict: Verdict, marks: dict[str, str] = _MARKS) -> str:
    """The verdict as lines of text: one line per named check, then the conclusion."""
    reading = doc.reading
    lines = [f"proof of reading seq {reading.seq} from {reading.device} ({doc.schema.name})"]
    width = max(len(c.name) for c in verdict.checks)
    for check in verdict.checks:
        state = "ok" if check.ok else "skipped" if check.skipped else "failed"
        lines.append(f"  {marks[state]} {check.name:<{width}}  {check.detail}")
    if verdict.status == "invalid":
        lines.append(f"INVALID: failed {', '.join(verdict.failed)}")
    elif verdict.status == "incomplete":
        lines.append(
            f"NOT VERIFIED: {', '.join(verdict.unchecked)} not checked; nothing failed, but "
            "nothing is claimed until the contracts are pinned (--deployment) and the block "
            "hash is trusted (--block-hash or --rpc)"
        )
    elif verdict.onchain:
        lines.append(
            "VALID: signed by the device, in the pinned deployment's anchor, in a canonical "
            "block, the key registered and active at anchor time"
        )
    else:
        lines.append(
            "VALID offline: signed by the device, anchored by the pinned ReadingAnchor in the "
            "trusted block; the device's registration was not checked (pass --rpc URL)"
        )
    return "\n".join(lines)


def _single(doc: ProofDocument, options: VerifyOptions, pins: Pins | None, out: TextIO) -> int:
    trusted = load_trusted(options.block_hashes)
    if options.rpc is None:
        verdict = verify_offline(doc, pins=pins, trusted_blocks=trusted)
    else:
        from chainsense.provenance.verify_rpc import verify_onchain

        verdict = asyncio.run(verify_onchain(doc, options.rpc, pins=pins, timeout=options.timeout))
    if options.as_json:
        out.write(json.dumps(verdict.to_json(), indent=2) + "\n")
    else:
        out.write(render_verdict(doc, verdict, _marks(out)) + "\n")
    return EXIT[verdict.status]


def _bundle(
    lines: list[str] | None, options: VerifyOptions, pins: Pins | None, out: TextIO, err: TextIO
) -> int:
    """Verify a bundle: ``lines``, or (``None``) the JSONL file ``options.source``, which the
    workers read by byte ranges themselves (offline only)."""
    from chainsense.provenance.bundle import trusted_judge, verify_file, verify_lines

    device = None
    code_failed = False
    coverage = None
    if options.rpc is not None:
        from chainsense.provenance.bundle_rpc import chain_facts

        assert lines is not None, "with --rpc the caller reads the lines"

        facts = asyncio.run(chain_facts(options.rpc, lines, pins, options.timeout))
        if options.coverage:
            from chainsense.provenance.coverage import check_coverage

            assert pins is not None, "checked with the options"
            coverage = asyncio.run(check_coverage(
                options.rpc, lines, pins, since_ms=options.since_ms,
                until_ms=options.until_ms, timeout=options.timeout,
            ))  # fmt: skip
        block = facts.block_judge()
        device = facts.device_judge() if pins is not None else None
        notes = [f"code: {facts.code.detail}"] if facts.code is not None else []
        code_failed = facts.code is not None and not facts.code.ok and not facts.code.skipped
        if facts.error:
            notes.append(f"RPC failed: {facts.error}")
    else:
        block = trusted_judge(load_trusted(options.block_hashes))
        notes = ["the devices' registration was not checked (pass --rpc URL)"]
    if pins is None:
        notes.append("the contracts were not pinned (pass --deployment FILE)")

    def progress(done: int, total: int) -> None:
        err.write(f"\r  verified {done}/{total}")
        if done == total:
            err.write("\n")
        err.flush()

    def read(done: int, position: int, size: int) -> None:
        if position < size:
            err.write(f"\r  verified {done} ({position / 1e6:.0f}/{size / 1e6:.0f} MB read)")
        else:
            err.write(f"\r  verified {done}/{done}" + " " * 16 + "\n")
        err.flush()

    if lines is None:
        result = verify_file(options.source, pins=pins, block=block, device=device,
                             workers=options.workers, progress=read)  # fmt: skip
    else:
        result = verify_lines(lines, pins=pins, block=block, device=device,
                              workers=options.workers, progress=progress)  # fmt: skip
    result.notes.extend(notes)
    if coverage is not None and not coverage.check.ok:
        code_failed = True
    if options.as_json:
        body = result.to_json()
        if coverage is not None:
            body["coverage"] = coverage.to_json()
            body["ok"] = bool(body.get("ok")) and coverage.check.ok
        out.write(json.dumps(body, indent=2) + "\n")
    else:
        c = result.counts
        out.write(
            f"{result.total} proofs in {result.blocks} blocks: {c['valid']} valid, "
            f"{c['invalid']} invalid, {c['incomplete']} incomplete, {c['malformed']} malformed"
            + (f", {c['pending']} pending (no proof yet)" if c["pending"] else "")
            + "\n"
        )
        for name, count in result.failed_checks.most_common():
            out.write(f"  failed {name}: {count}\n")
        for failure in result.failures[:10]:
            out.write(f"  line {failure['line']}: {failure['status']}: {failure['detail']}\n")
        for note in result.notes:
            out.write(f"  note: {note}\n")
        if coverage is not None:
            mark = "ok" if coverage.check.ok else "FAILED"
            out.write(f"  coverage {mark}: {coverage.check.detail}\n")
            for number, root in coverage.missing[:10]:
                out.write(f"    missing: batch root {root}, anchored in block {number}\n")
            if coverage.outside:
                out.write(f"  note: {coverage.outside} batches of the bundle were anchored "
                          "outside the period\n")  # fmt: skip
        if result.ok and not code_failed:
            out.write("VALID: every proof passed every check"
                      + (", and the bundle holds every batch anchored in the period\n"
                         if coverage is not None else "\n"))  # fmt: skip
        elif coverage is not None and not coverage.check.ok:
            out.write("INVALID: the bundle does not hold every batch anchored in the period "
                      "(see coverage)\n")  # fmt: skip
        elif c["invalid"] or c["malformed"] or code_failed:
            out.write("INVALID: some proofs failed (see above)\n")
        else:
            out.write("NOT VERIFIED: nothing failed, but not every check ran (see the notes)\n")
    if code_failed:
        return 1
    if result.ok:
        return 0
    return 1 if result.counts["invalid"] or result.counts["malformed"] else 3


def run(options: VerifyOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Verify what ``options.source`` holds; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    from chainsense.provenance.bundle import BundleError, jsonl_file, read_bundle

    try:
        pins = load_pins(options)
        trusted = load_trusted(options.block_hashes)  # read early: a bad file is exit 2
        del trusted
        if options.coverage and (options.rpc is None or pins is None):
            raise UsageError(
                "--since/--until compare the bundle with what the pinned ReadingAnchor "
                "anchored: they need --rpc URL and --deployment FILE (or explicit pins)"
            )
        if options.rpc is None and options.source.endswith(".jsonl") and jsonl_file(options.source):
            return _bundle(None, options, pins, out, err)  # the workers read the file
        lines = read_bundle(options.source)
    except (UsageError, BundleError) as exc:
        return _usage(str(exc), options, out, err)
    bundle = options.source.endswith((".jsonl", ".zip")) or len(lines) != 1 or options.coverage
    if bundle:
        if not lines:
            return _usage(f"{options.source} holds no proof", options, out, err)
        return _bundle(lines, options, pins, out, err)
    try:
        doc = ProofDocument.from_json(json.loads(lines[0]))
    except ValueError as exc:
        return _usage(f"{options.source} is not JSON: {exc}", options, out, err)
    except ProofFormatError as exc:
        return _usage(f"not a proof document: {exc}", options, out, err, field=exc.field)
    return _single(doc, options, pins, out)


def _usage(
    message: str, options: VerifyOptions, out: TextIO, err: TextIO, field: str | None = None
) -> int:
    if options.as_json:
        body: dict[str, Any] = {"ok": False, "error": {"field": field, "detail": message}}
        out.write(json.dumps(body) + "\n")
    else:
        err.write(f"error: {message}\n")
    return 2
