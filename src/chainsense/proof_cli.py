"""``chainsense proof get`` and ``chainsense export``: proofs and bulk exports from the local store.

They read the platform's database directly (the SQLite file in the data dir, or
``CHAINSENSE_DATABASE_URL``) and the deployment records, so they need neither the API nor an API
key, and they work while the server runs (SQLite WAL lets readers in beside the writer). The
anchor blocks' headers and receipts come from the chain (``CHAINSENSE_RPC_URL``, or the local
dev chain the platform runs).
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from chainsense.chain.client import ChainClient
from chainsense.chain.deploy import DeploymentStore, published_deployment
from chainsense.config import Settings
from chainsense.errors import ConfigError
from chainsense.platform import anchor_policy
from chainsense.provenance.blockfetch import BlockEvidenceSource
from chainsense.provenance.export import (
    Pending,
    ProofService,
    readings_csv,
    readings_jsonl,
)
from chainsense.provenance.proof import DomainRef
from chainsense.store import Store, StoredReading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

__all__ = ["export", "proof_app"]

proof_app = typer.Typer(help="Proofs of single readings.", no_args_is_help=True)


def _domain(settings: Settings, store_chain_id: int | None) -> DomainRef:
    """The EIP-712 domain readings were signed in: the recorded DeviceRegistry deployment."""
    records = DeploymentStore(settings.deployments_dir)
    chain_id = store_chain_id or settings.anvil_chain_id
    deployment = records.load(chain_id)
    if deployment is None:
        raise ConfigError(
            f"no deployment recorded for chain {chain_id} in {settings.deployments_dir}; is "
            "CHAINSENSE_DATA_DIR the platform's data dir?"
        )
    return DomainRef(chain_id, deployment.address("DeviceRegistry"))


async def _published(settings: Settings, chain_id: int) -> dict[str, object]:
    """The deployment document, for the bundle (a verifier should compare it with the one the
    operator publishes elsewhere before trusting it)."""
    deployment = DeploymentStore(settings.deployments_dir).load(chain_id)
    if deployment is None:
        raise ConfigError(f"no deployment recorded for chain {chain_id}")
    async with await ChainClient.connect(_rpc_url(settings)) as client:
        return await published_deployment(client, deployment)


def _rpc_url(settings: Settings) -> str:
    return settings.rpc_url or f"http://{settings.anvil_host}:{settings.anvil_port}"


async def _service(settings: Settings) -> tuple[Store, ProofService]:
    if not settings.database_url and not (settings.data_dir / "chainsense.db").exists():
        raise ConfigError(
            f"no database at {settings.data_dir / 'chainsense.db'}; set CHAINSENSE_DATA_DIR (or "
            "CHAINSENSE_DATABASE_URL) to the platform's"
        )
    store = await Store.open(settings.store_url)
    try:
        anchored = await store.batches.find(limit=1)
        domain = _domain(settings, anchored[0].chain_id if anchored else None)
    except BaseException:
        await store.close()
        raise

    service = ProofService(
        store=store,
        schemas=BUILTIN_SCHEMAS,
        domain=domain,
        policy=anchor_policy(settings),
        evidence=BlockEvidenceSource(_rpc_url(settings)),
    )
    return store, service


@proof_app.command("get")
def proof_get(
    reading_id: Annotated[int, typer.Argument(help="The reading's id (from its acknowledgement).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the proof here (default: stdout).")
    ] = None,
) -> None:
    """Print the proof document of one reading; exit 4 if it is not anchored yet."""
    from chainsense.cli import _run

    settings = Settings()

    async def get() -> dict[str, object] | Pending:
        store, service = await _service(settings)
        try:
            found = await service.proof(reading_id)
        finally:
            await store.close()
        return found if isinstance(found, Pending) else found.to_json()

    found = _run(get())  # no such reading: ReadingNotFoundError, exit 1
    if isinstance(found, Pending):
        typer.secho(
            f"pending: reading {reading_id} is {found.state}; expect its proof in about "
            f"{found.expected_wait_seconds:.1f} s ({found.detail})",
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
    device: Annotated[str, typer.Option(help="The device address.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write (.zip).")],
    since: Annotated[
        int | None, typer.Option(help="From this device time, ms since the epoch (inclusive).")
    ] = None,
    until: Annotated[
        int | None, typer.Option(help="Before this device time, ms (exclusive).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Readings as csv or jsonl.")] = "csv",
) -> None:
    """Export a device's readings in a time range, with their proofs, as one zip bundle:
    readings.csv (or .jsonl), proofs.jsonl (one proof document per anchored reading),
    manifest.json and deployment.json. Check the whole bundle with `chainsense verify BUNDLE.zip
    --deployment DEPLOYMENT.json --rpc URL` (or offline with --block-hash)."""
    from eth_utils.address import is_address, to_checksum_address

    from chainsense.cli import _run

    if fmt not in ("csv", "jsonl"):
        typer.secho("error: --format must be csv or jsonl", fg="red", err=True)
        raise typer.Exit(2)
    if not is_address(device):
        typer.secho(f"error: --device {device!r} is not an address", fg="red", err=True)
        raise typer.Exit(2)
    settings = Settings()
    address = to_checksum_address(device)

    async def build() -> tuple[int, int, int]:
        store, service = await _service(settings)
        rows: list[StoredReading] = []
        proofs: list[str] = []
        pending = 0
        try:
            async for row, doc in service.proofs(device=address, since_ms=since, until_ms=until):
                rows.append(row)
                if isinstance(doc, Pending):
                    pending += 1
                else:
                    proofs.append(json.dumps(doc.to_json(), separators=(",", ":")))
                if len(rows) % 10_000 == 0:
                    typer.echo(f"  {len(rows)} readings…", err=True)
            published = await _published(settings, service.domain.chain_id)
        finally:
            await store.close()
        manifest = {
            "device": address,
            "since": since,
            "until": until,
            "readings": len(rows),
            "proofs": len(proofs),
            "pending": pending,
            "exported_at": datetime.now(UTC).isoformat(),
        }
        tmp = out.with_name(out.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            body = readings_csv(rows) if fmt == "csv" else readings_jsonl(rows)
            bundle.writestr(f"readings.{fmt}", body)
            bundle.writestr("proofs.jsonl", "".join(p + "\n" for p in proofs))
            bundle.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
            bundle.writestr("deployment.json", json.dumps(published, indent=2) + "\n")
        tmp.replace(out)
        return len(rows), len(proofs), pending

    n, proved, pending = _run(build())
    typer.echo(f"wrote {out}: {n} readings, {proved} proofs", err=True)
    if pending:
        typer.secho(
            f"{pending} readings are not anchored yet and have no proof in the bundle; export "
            "again in a few seconds",
            fg="yellow",
            err=True,
        )
