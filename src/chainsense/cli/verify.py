"""``chainsense verify PROOF|BUNDLE``: check a proof document, a JSONL bundle or an export zip
against the deployment the verifier trusts and a trusted block hash (or any RPC endpoint of its
chain). It needs no platform, store or deployment record. The work is in
:mod:`chainsense.provenance.verify_run`; exit codes are documented there (0 valid, 1 a check
failed, 2 unreadable input, 3 incomplete: not pinned or no trusted block hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["verify_command"]


def verify_command(
    proof: Annotated[
        str,
        typer.Argument(help="A proof (JSON), a bundle (JSONL) or an export zip; - reads stdin."),
    ],
    deployment: Annotated[
        Path | None,
        typer.Option(help="The deployment document you trust (GET /v1/deployment)."),
    ] = None,
    chain_id: Annotated[int | None, typer.Option(help="Pin: the chain id.")] = None,
    registry: Annotated[str | None, typer.Option(help="Pin: the DeviceRegistry.")] = None,
    anchor: Annotated[str | None, typer.Option(help="Pin: the ReadingAnchor.")] = None,
    block_hash: Annotated[
        list[str] | None,
        typer.Option("--block-hash", help="A trusted block hash, or a file of them (repeatable)."),
    ] = None,
    rpc: Annotated[
        str | None,
        typer.Option("--rpc", help="A JSON-RPC URL of the chain: confirms the block hash."),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            help="With --rpc: also check that the bundle holds every batch the pinned "
            "ReadingAnchor anchored from this time (ms since the epoch)."
        ),
    ] = None,
    until: Annotated[
        int | None,
        typer.Option(help="With --rpc: ... and before this time (ms since the epoch)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="RPC timeout, seconds.")] = 10.0,
    workers: Annotated[
        int | None, typer.Option(help="Processes for a bundle (default: every core).")
    ] = None,
) -> None:
    """Verify a proof or a bundle: each check is named; exit 0 valid, 1 a check failed,
    2 unreadable input, 3 not pinned or no trusted block hash (nothing claimed).

    With --since/--until (and --rpc, pinned contracts) a bundle must also hold every batch the
    pinned ReadingAnchor anchored in that period (`chainsense export --batches` writes one)."""
    from chainsense.provenance.verify_run import VerifyOptions, run

    options = VerifyOptions(
        source=proof, deployment=deployment, chain_id=chain_id, registry=registry,
        anchor=anchor, block_hashes=tuple(block_hash or ()), rpc=rpc, as_json=as_json,
        timeout=timeout, workers=workers, since_ms=since, until_ms=until,
    )  # fmt: skip
    raise typer.Exit(run(options))
