"""``chainsense verify PROOF.json [--rpc URL] [--json]``: check a proof document, offline or
against any RPC endpoint of its chain. It needs no platform, store or deployment record.

Exit codes: 0 every check passed, 1 a check failed, 2 the file cannot be read or is not a proof
document (the message names the field).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from chainsense.provenance.proof import ProofDocument
    from chainsense.provenance.verify import Verdict

__all__ = ["render_verdict", "verify_command"]

_MARKS = {"ok": "✓", "failed": "✗", "skipped": "·"}
_ASCII_MARKS = {"ok": "OK", "failed": "FAIL", "skipped": "--"}


def _marks() -> dict[str, str]:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "".join(_MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return _ASCII_MARKS
    return _MARKS


def render_verdict(doc: ProofDocument, verdict: Verdict, marks: dict[str, str] = _MARKS) -> str:
    """The verdict as lines of text: one line per named check, then the conclusion."""
    reading = doc.reading
    schema = f" ({doc.schema.name})" if doc.schema is not None else ""
    lines = [f"proof of reading seq {reading.seq} from {reading.device}{schema}"]
    width = max(len(c.name) for c in verdict.checks)
    for check in verdict.checks:
        state = "ok" if check.ok else "skipped" if check.skipped else "failed"
        lines.append(f"  {marks[state]} {check.name:<{width}}  {check.detail}")
    if not verdict.ok:
        lines.append(f"INVALID: failed {', '.join(verdict.failed)}")
    elif verdict.onchain:
        lines.append(
            "VALID: signed by the device, anchored on-chain, the key active at anchor time"
        )
    else:
        lines.append(
            "VALID offline: signature, leaf and Merkle path hold; the anchor and the device key "
            "were not checked against a chain (pass --rpc URL)"
        )
    return "\n".join(lines)


def _read(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"cannot read {source}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Unreadable(f"{source} is not JSON: {exc}") from None


class _Unreadable(Exception):
    pass


def verify_command(
    proof: Annotated[str, typer.Argument(help="The proof document (JSON); - reads stdin.")],
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc", help="A JSON-RPC URL of the anchor's chain; without it, offline checks only."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="RPC timeout, seconds.")] = 10.0,
) -> None:
    """Verify a proof document: each check is named; exit 1 if any fails."""
    from chainsense.provenance.proof import ProofDocument, ProofFormatError
    from chainsense.provenance.verify import verify_offline, verify_onchain

    try:
        doc = ProofDocument.from_json(_read(proof))
    except (_Unreadable, ProofFormatError) as exc:
        field = exc.field if isinstance(exc, ProofFormatError) else None
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": {"field": field, "detail": str(exc)}}))
        else:
            what = "not a proof document" if field else "unreadable"
            typer.secho(f"error: {what}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    if rpc is None:
        verdict = verify_offline(doc)
    else:
        verdict = asyncio.run(verify_onchain(doc, rpc, timeout=timeout))
    if as_json:
        typer.echo(json.dumps(verdict.to_json(), indent=2))
    else:
        typer.echo(render_verdict(doc, verdict, _marks()))
    raise typer.Exit(0 if verdict.ok else 1)
