"""/v1/readings: devices post signed readings; operators query them."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from chainsense.api.body import NO_BODY, json_body
from chainsense.api.deps import PlatformDep, ReaderDep
from chainsense.api.errors import PROBLEM_JSON, AsciiJSONResponse, ProblemResponse
from chainsense.api.params import CursorQuery, DeviceFilter, LimitQuery, SinceQuery, UntilQuery
from chainsense.identity import Reading as DomainReading
from chainsense.platform import Platform
from chainsense.provenance.export import Pending, ReadingNotFoundError
from chainsense.provenance.models import ProofPending, ProofPublic
from chainsense.store import StoredReading
from chainsense.telemetry.acks import acknowledgement
from chainsense.telemetry.ingest import BodyError, Rejection, split_body
from chainsense.telemetry.models import (
    BatchAck,
    BatchIn,
    ReadingAck,
    ReadingIn,
    ReadingPage,
    ReadingPublic,
    ReadingSenMLIn,
)
from chainsense.telemetry.schemas import SchemaRegistry, UnknownSchemaError

router = APIRouter(prefix="/readings", tags=["readings"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}

_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ReadingIn"},
                        {"$ref": "#/components/schemas/ReadingSenMLIn"},
                        {"$ref": "#/components/schemas/BatchIn"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "",
    summary="Submit one signed reading, or a batch",
    description=(
        'Takes one reading (raw typed form or SenML form) or `{"readings": [...]}`. Each reading '
        "is checked (schema, EIP-712 signature, registry, seq) and durably stored before the "
        "answer is sent. One reading: 201 stored, 200 identical replay (same id), or a "
        "problem+json error. A batch: 200 with a result per reading; bad readings never drop "
        "good ones. No API key: the signature authenticates the device. The format is strict "
        "(docs/input.md): unknown fields, both `values` and `senml`, duplicate keys and "
        "non-JSON bodies are refused."
    ),
    openapi_extra=_BODY_SCHEMA,
    responses={
        200: {"model": BatchAck | ReadingAck, "description": "Batch results, or a replay"},
        201: {"model": ReadingAck, "description": "Stored"},
        400: _PROBLEM | {"description": "Malformed JSON"},
        401: _PROBLEM | {"description": "Signature does not recover the device"},
        403: _PROBLEM | {"description": "Unknown, revoked or rotated device"},
        409: _PROBLEM | {"description": "seq already used by another reading, or not increasing"},
        413: _PROBLEM | {"description": "Body or batch too large"},
        422: _PROBLEM | {"description": "A field is invalid (the problem names it)"},
    },
)
async def post_readings(request: Request, platform: PlatformDep) -> JSONResponse:
    # The same answer as the fast path (api/fastingest.py), which serves this route unless
    # tracing or CORS is on or CHAINSENSE_FAST_INGEST=false; this one stays for those and the docs.
    status, content, headers = await answer_readings(platform, json_body(request))
    if status < 400:
        return AsciiJSONResponse(content, status, headers=headers)
    return ProblemResponse(content, status, headers=headers)


async def answer_readings(
    platform: Platform, body: Any
) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Ingest a parsed body (:data:`NO_BODY` for none): the status, the JSON answer (a problem
    from 400 on) and the extra headers (Retry-After of a rate-limited reading)."""
    try:
        if body is NO_BODY:
            raise BodyError(
                Rejection(
                    422,
                    "invalid-body",
                    "Invalid body",
                    'the body is empty; send a reading or {"readings": [...]}',
                )
            )
        items, is_batch = split_body(body, max_batch=platform.settings.max_batch)
    except BodyError as exc:
        return exc.rejection.status, exc.rejection.problem(), None
    results = await platform.ingest.ingest(items)
    status, ack = acknowledgement(results, batch=is_batch)
    if status < 400:
        return status, ack, None
    wait = results[0].error.retry_after if results[0].error is not None else None
    headers = {"Retry-After": str(math.ceil(wait))} if wait is not None else None
    return status, ack, headers


def _public(row: StoredReading, schemas: SchemaRegistry) -> ReadingPublic:
    try:
        schema_name: str | None = schemas.by_id(row.schema).name
    except UnknownSchemaError:
        schema_name = None
    json_form = DomainReading(row.device, row.seq, row.timestamp, row.schema, row.values).to_json()
    return ReadingPublic(
        id=row.id,
        device=row.device,
        seq=json_form["seq"],
        timestamp=json_form["timestamp"],
        schema=json_form["schema"],
        schema_name=schema_name,
        values=json_form["values"],
        signature="0x" + row.signature.hex(),
        struct_hash="0x" + row.struct_hash.hex(),
        received_at=row.received_at.isoformat(),
        batch_id=row.batch_id,
    )


@router.get("", response_model=ReadingPage, summary="Query readings by device and time range")
async def list_readings(
    platform: PlatformDep,
    _key: ReaderDep,
    device: DeviceFilter = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    order: Annotated[
        Literal["asc", "desc"],
        Query(description="By id: `asc` oldest first (default), `desc` newest first"),
    ] = "asc",
) -> ReadingPage:
    from eth_utils.address import to_checksum_address

    rows = await platform.store.readings.query(
        device=to_checksum_address(device) if device else None,
        since_ms=since,
        until_ms=until,
        after_id=int(cursor) if cursor else None,
        limit=limit + 1,
        newest_first=order == "desc",
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return ReadingPage(
        items=[_public(r, platform.schemas) for r in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


@router.get(
    "/{reading_id}",
    response_model=ReadingPublic,
    summary="One stored reading",
    responses={404: _PROBLEM | {"description": "No such reading"}},
)
async def get_reading(
    reading_id: Annotated[int, Path(ge=1, lt=2**63)], platform: PlatformDep, _key: ReaderDep
) -> ReadingPublic:
    row = await platform.store.readings.get(reading_id)
    if row is None:
        raise HTTPException(404, f"no reading with id {reading_id}")
    return _public(row, platform.schemas)


#: Models the request body of POST /v1/readings refers to; app.py adds them to the OpenAPI
#: components, since the handler parses the body itself.
BODY_MODELS = (ReadingIn, ReadingSenMLIn, BatchIn)


@router.get(
    "/{reading_id}/proof",
    summary="The proof of one reading (or when to expect it)",
    description=(
        "200: a self-contained proof document (format `chainsense.proof.v1`): the reading and "
        "its signature, the schema, the EIP-712 domain, the leaf, the Merkle path, the root and "
        "the anchor (chain id, contract, transaction, block number and time). Anyone can check "
        "it with `chainsense verify` or `POST /v1/verify`. 202: the reading is stored but its "
        "batch is not anchored yet; the body says where it is and how long to wait (also in "
        "`Retry-After`)."
    ),
    response_model=ProofPublic,
    responses={
        202: {"model": ProofPending, "description": "Not anchored yet"},
        404: _PROBLEM | {"description": "No such reading"},
    },
)
async def get_proof(
    reading_id: Annotated[int, Path(ge=1, lt=2**63)], platform: PlatformDep, _key: ReaderDep
) -> JSONResponse:
    try:
        found = await platform.proofs.proof(reading_id)
    except ReadingNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    if isinstance(found, Pending):
        retry = max(1, math.ceil(found.expected_wait_seconds))
        return JSONResponse(found.to_json(), 202, headers={"Retry-After": str(retry)})
    return JSONResponse(found.to_json(), 200)
