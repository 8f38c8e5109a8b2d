"""``chainsense proof get`` and ``chainsense export``: proofs and bulk exports, through the API.

They ask the platform's API (``CHAINSENSE_API_URL``, else ``CHAINSENSE_HOST``/``CHAINSENSE_PORT``,
else the server running on ``CHAINSENSE_DATA_DIR``) with any API key (``CHAINSENSE_API_KEY``), so
they work from another host as well as beside the server.
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from chainsense.cli._common import ApiOption, api_download, api_request, call, fail
from chainsense.cli._common import settings as _settings

__all__ = ["export", "proof_app"]

proof_app = typer.Typer(help="Proofs of single readings.", no_args_is_help=True)


@proof_app.command("get")
def proof_get(
    reading_id: Annotated[int, typer.Argument(help="The reading's id (from its acknowledgement).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the proof here (default: stdout).")
    ] = None,
    api: ApiOption = None,
) -> None:
    """Print the proof document of one reading; exit 4 if it is not anchored yet."""
    settings = _settings(api=api)
    response = call(lambda: api_request(settings, "GET", f"/v1/readings/{reading_id}/proof"))
    found = response.json()
    if response.status_code == 202:
        typer.secho(
            f"pending: reading {reading_id} is {found['state']}; expect its proof in about "
            f"{found['expected_wait_seconds']:.1f} s ({found['detail']})",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(4)
    text = json.dumps(found, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote the proof of reading {reading_id} to {out}", err=True)


def export(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The bundle to write (.zip; .jsonl for --batches).")
    ],
    device: Annotated[str | None, typer.Option(help="The device address.")] = None,
    batches: Annotated[
        bool,
        typer.Option(
            "--batches",
            help="Every reading of the batches anchored in [--since, --until) (anchor block "
            "time, ms), as one chainsense.bundle.v2 file of complete sections.",
        ),
    ] = False,
    since: Annotated[
        int | None,
        typer.Option(
            help="From this device time, ms since the epoch (inclusive); with --batches, "
            "this anchor block time."
        ),
    ] = None,
    until: Annotated[
        int | None,
        typer.Option(help="Before this device time, ms (exclusive); with --batches, block time."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Readings as csv (default) or jsonl.")
    ] = None,
    api: ApiOption = None,
) -> None:
    """Export a device's readings, with their proofs, or every anchored batch of a period.

    With --device: the readings in a time range (device time), with their proofs, as one zip:
    readings.csv (or .jsonl), proofs.jsonl (a chainsense.bundle.v2 bundle: a batch line per
    batch, a proof line per anchored reading), manifest.json and deployment.json (GET
    /v1/deployment). With --batches: GET /v1/export/batches streamed to --out, a
    chainsense.bundle.v2 bundle holding every reading of each batch anchored in the range
    (complete sections, no Merkle paths); sealed batches not anchored yet are left out. Check
    either with `chainsense verify FILE --deployment DEPLOYMENT.json --rpc URL` (or offline
    with --block-hash)."""
    if (device is None) == (not batches):
        fail("give either --device ADDRESS or --batches", 2)
    if batches:
        if since is not None and until is not None and until <= since:
            fail(f"--until {until} is not after --since {since}", 2)
        if fmt is not None:
            fail("--format applies to --device exports (readings.csv or .jsonl)", 2)
        _export_batches(out, since, until, api)
        return
    assert device is not None
    fmt = fmt or "csv"
    if fmt not in ("csv", "jsonl"):
        fail("--format must be csv or jsonl", 2)
    if not (device.startswith("0x") and len(device) == 42):
        fail(f"--device {device!r} is not an address", 2)
    settings = _settings(api=api)
    params: dict[str, Any] = {"device": device}
    if since is not None:
        params["since"] = since
    if until is not None:
        params["until"] = until

    def fetch(path: str, extra: dict[str, Any]) -> str:
        response = api_request(settings, "GET", path, params={**params, **extra}, timeout=600)
        return response.text

    readings = call(lambda: fetch("/v1/export/readings", {"format": fmt}))
    lines = call(lambda: fetch("/v1/export/proofs", {})).splitlines()
    deployment = call(lambda: api_request(settings, "GET", "/v1/deployment")).json()
    # a chainsense.bundle.v2 bundle: the format line, batch lines, proof lines, pending lines
    kept = [line for line in lines if line and not line.startswith('{"pending":')]
    proofs = [line for line in kept if line.startswith('{"proof":')]
    pending = sum(1 for line in lines if line.startswith('{"pending":'))
    count = len(proofs) + pending
    manifest = {
        "device": device,
        "since": since,
        "until": until,
        "readings": count,
        "proofs": len(proofs),
        "pending": pending,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(f"readings.{fmt}", readings)
        bundle.writestr("proofs.jsonl", "".join(line + "\n" for line in kept))
        bundle.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        bundle.writestr("deployment.json", json.dumps(deployment, indent=2) + "\n")
    tmp.replace(out)
    typer.echo(f"wrote {out}: {count} readings, {len(proofs)} proofs", err=True)
    if pending:
        typer.secho(
            f"{pending} readings are not anchored yet and have no proof in the bundle; export "
            "again in a few seconds",
            fg="yellow",
            err=True,
        )


def _export_batches(out: Path, since: int | None, until: int | None, api: str | None) -> None:
    """Stream GET /v1/export/batches into ``out`` (through a temporary file beside it), then
    count its sections and proofs."""
    params = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
    settings = _settings(api=api)
    tmp = out.with_name(out.name + ".tmp")
    try:
        call(lambda: api_download(settings, "/v1/export/batches", tmp, params=params, timeout=600))
        sections = proofs = 0
        with tmp.open("rb") as f:
            for line in f:
                if line.startswith(b'{"batch":'):
                    sections += 1
                elif line.startswith(b'{"proof":'):
                    proofs += 1
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed download leaves no partial file
    batches = "batch" if sections == 1 else "batches"
    typer.echo(f"wrote {out}: {sections} {batches}, {proofs} proofs (complete sections)", err=True)
