"""/v1/export: a device's readings over a time range, as CSV or JSON lines, and their proofs;
the whole batches anchored in a time range, as a bundle of complete sections."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from chainsense.api.deps import PlatformDep, ReaderDep
from chainsense.api.params import DeviceQuery, SinceQuery, UntilQuery
from chainsense.provenance.bundle_v2 import BundleWriter
from chainsense.provenance.export import readings_csv, readings_jsonl
from chainsense.provenance.proof import ProofDocument

router = APIRouter(prefix="/export", tags=["provenance"])

_PAGE = 1000


class ExportFormat(enum.StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class ProofsFormat(enum.StrEnum):
    bundle = "bundle"
    """``chainsense.bundle.v2``: a batch line per batch, then a small line per proof."""
    proofs = "proofs"
    """One whole ``chainsense.proof.v2`` document per line."""


@router.get(
    "/readings",
    summary="A device's readings in a time range, as CSV or JSON lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
async def export_readings(
    platform: PlatformDep,
    _key: ReaderDep,
    device: DeviceQuery,
    since: SinceQuery = None,
    until: UntilQuery = None,
    format: Annotated[ExportFormat, Query()] = ExportFormat.csv,
) -> StreamingResponse:
    address = to_checksum_address(device)

    async def rows() -> AsyncIterator[str]:
        after: int | None = None
        first = True
        while page := await platform.store.readings.query(
            device=address, since_ms=since, until_ms=until, after_id=after, limit=_PAGE
        ):
            if format is ExportFormat.csv:
                yield readings_csv(page, header=first)
            else:
                yield readings_jsonl(page)
            first = False
            after = page[-1].id
        if first and format is ExportFormat.csv:
            yield readings_csv([], header=True)

    media = "text/csv" if format is ExportFormat.csv else "application/x-ndjson"
    name = f"readings-{address}.{format.value}"
    return StreamingResponse(
        rows(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/proofs",
    summary="The proof bundle of a device's readings in a time range (JSON lines)",
    description="`format=bundle` (the default): a `chainsense.bundle.v2` bundle, in reading "
    "order: the format line, then for each batch a batch line with the parts its proofs share "
    "(root, domain, schema, anchor with the block header and receipts-trie proof) followed by "
    "one small line per proof (reading, signature, Merkle path); a reading not anchored yet "
    'gets a `{"pending": {...}}` line. `format=proofs`: one whole `chainsense.proof.v2` '
    'document per line, `{"status": "pending", ...}` for a reading not anchored yet. Verify '
    "either with `chainsense verify bundle.jsonl --deployment deployment.json --rpc URL` (the "
    "deployment document from `GET /v1/deployment`), or offline with `--block-hash` instead "
    "of `--rpc`. The format is specified in docs/proof-format.md.",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_proofs(
    platform: PlatformDep,
    _key: ReaderDep,
    device: DeviceQuery,
    since: SinceQuery = None,
    until: UntilQuery = None,
    format: Annotated[ProofsFormat, Query()] = ProofsFormat.bundle,
) -> StreamingResponse:
    address = to_checksum_address(device)

    async def lines() -> AsyncIterator[str]:
        writer = BundleWriter() if format is ProofsFormat.bundle else None
        async for _, doc in platform.proofs.proofs(device=address, since_ms=since, until_ms=until):
            if writer is None:
                yield json.dumps(doc.to_json(), separators=(",", ":")) + "\n"
            else:
                item = doc if isinstance(doc, ProofDocument) else doc.to_json()
                yield "".join(line + "\n" for line in writer.lines(item))
        if writer is not None:
            yield "".join(line + "\n" for line in writer.finish())

    name = f"proofs-{address}.jsonl"
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


BlockSinceQuery = Annotated[
    int | None,
    Query(
        ge=0,
        lt=2**63,
        description="From this anchor block time (ms since the epoch, inclusive; block times "
        "are whole seconds)",
    ),
]
BlockUntilQuery = Annotated[
    int | None,
    Query(ge=0, lt=2**63, description="Before this anchor block time (ms, exclusive)"),
]


@router.get(
    "/batches",
    summary="Every reading of the batches anchored in a time range, as complete sections "
    "(JSON lines)",
    description="A `chainsense.bundle.v2` bundle of whole batches, for an auditor who checks "
    "everything the operator anchored in a period: the format line, then for every batch "
    "whose anchor block time is in `[since, until)` (ms; omit either for no bound), by batch "
    'id, a batch line with `"complete": true` followed by one proof line per reading of the '
    "batch (by reading id) with `merkle_proof: null`: the verifier rebuilds the batch's tree "
    "once from the section's readings and compares its root with the anchored one. Sealed "
    "batches not anchored yet have no anchor time and are left out (no pending lines); so are "
    "readings in no batch. Streamed batch by batch, a page of readings at a time. Verify with "
    "`chainsense verify batches.jsonl --deployment deployment.json --rpc URL` (or "
    "`--block-hash` offline). The format is specified in docs/proof-format.md, section 9.",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_batches(
    platform: PlatformDep,
    _key: ReaderDep,
    since: BlockSinceQuery = None,
    until: BlockUntilQuery = None,
) -> StreamingResponse:
    lines = platform.proofs.batch_bundle(since_ms=since, until_ms=until)
    name = "batches.jsonl"
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


__all__ = ["ExportFormat", "ProofsFormat", "router"]
