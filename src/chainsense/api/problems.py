"""The catalogue of problem types: every ``type`` an error of this API carries, and the page that
describes it (``GET /problems/{code}``).

A problem's ``type`` is the relative URI ``/problems/{code}`` (RFC 9457 section 3.1.1: resolved
against the request's URI, so it points at this server whatever its host name); fetching it
returns a short HTML page, or the entry as JSON with ``Accept: application/json``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse

__all__ = ["PROBLEM_TYPES", "ProblemType", "code_for_status", "router", "type_uri"]


@dataclass(frozen=True)
class ProblemType:
    code: str
    status: int
    title: str
    description: str


def _types(*entries: tuple[str, int, str, str]) -> dict[str, ProblemType]:
    return {code: ProblemType(code, status, title, text) for code, status, title, text in entries}


PROBLEM_TYPES = _types(
    # --- any request --------------------------------------------------------------------------
    ("malformed-json", 400, "Malformed JSON", "The body is not JSON. The detail says where."),
    ("invalid-utf8", 400, "Body is not UTF-8", "A JSON body must be UTF-8 (RFC 8259)."),
    ("too-deep", 400, "Nested too deep",
     "Arrays and objects are nested deeper than CHAINSENSE_MAX_JSON_DEPTH (32 by default). No "
     "body of this API needs more than a few levels."),
    ("duplicate-key", 400, "Duplicate key",
     "An object has the same key twice. Parsers disagree on which one wins, so a proxy or a log "
     "could see other data than the platform stores; each key may appear once."),
    ("lone-surrogate", 400, "Lone surrogate",
     "A string holds a \\uD800-\\uDFFF escape that is not half of a surrogate pair: it is not "
     "a character and cannot be stored."),
    ("number-too-long", 400, "Number too long",
     "A number has more than 100 characters. No field of this API takes more than 78 digits."),
    ("invalid-number", 400, "Not a JSON number", "NaN and Infinity are not JSON numbers."),
    ("body-too-large", 413, "Body too large",
     "The body is larger than CHAINSENSE_MAX_BODY_BYTES (4 MiB by default)."),
    ("unsupported-media-type", 415, "Unsupported media type",
     "Every request body of this API is JSON: send Content-Type: application/json (UTF-8)."),
    ("invalid-request", 422, "Invalid request",
     "A field of the body, the query or the path is invalid. `field` names the first one, "
     "`errors` lists them all, each with where it is (body, query, path or header)."),
    ("unauthorized", 401, "Unauthorized",
     "No API key, or an unknown or revoked one. Send `Authorization: Bearer <key>`; an "
     "operator creates keys with `chainsense apikey create`."),
    ("forbidden", 403, "Forbidden", "The API key's scope is below what the route needs."),
    ("not-found", 404, "Not found", "No such route, or no such resource."),
    ("method-not-allowed", 405, "Method not allowed", "The route does not take this method."),
    ("not-acceptable", 406, "Not acceptable", "The route cannot answer in the media type asked."),
    ("conflict", 409, "Conflict", "The request conflicts with the current state."),
    ("rate-limited", 429, "Too many requests", "Slow down; `Retry-After` says when to retry."),
    ("internal-error", 500, "Internal error",
     "A bug: the server logged it. Nothing the request asked for is half done."),
    ("unavailable", 503, "Service unavailable", "Retry later; `Retry-After` says when."),
    (
        "invalid-topic",
        422,
        "Invalid topic",
        "MQTT: a device publishes to chainsense/v1/devices/<address>/readings, the address in "
        "lowercase hex with the 0x prefix (docs/mqtt.md).",
    ),
    (
        "topic-mismatch",
        403,
        "Reading published on another device's topic",
        "MQTT: each device publishes only its own readings, on its own topic; the reading's "
        "device differs from the topic's address.",
    ),
    (
        "ingest-unavailable",
        503,
        "Ingest unavailable",
        "MQTT: the platform could not store the message now; nothing was stored. Publish it "
        "again (the device keeps it until a receipt says stored).",
    ),
    (
        "overloaded",
        503,
        "Server overloaded",
        "The server is handling as many requests as it is configured to (CHAINSENSE_SHED_*); "
        "retry after the `Retry-After` header's seconds. Health probes are never shed.",
    ),
    ("http-error", 400, "HTTP error", "An HTTP-level error; the status says which."),
    # --- POST /v1/readings ------------------------------------------------------------------
    ("invalid-body", 422, "Invalid body",
     'The body is neither a reading object nor {"readings": [...]} with 1 to '
     "CHAINSENSE_MAX_BATCH readings."),
    ("batch-too-large", 413, "Batch too large",
     "More readings in one request than CHAINSENSE_MAX_BATCH (1000 by default)."),
    ("invalid-reading", 422, "Invalid reading",
     "A field of a reading is missing, of the wrong type or out of range; `field` names it. "
     "See docs/input.md for the exact format."),
    ("unknown-field", 422, "Unknown field",
     "A reading (or a SenML record, or the batch envelope) has a field the format does not "
     "define. The format is strict: nothing unknown is stored or silently dropped."),
    ("ambiguous-reading", 422, "Ambiguous reading",
     "A reading has both `values` and `senml`: it must have exactly one of them."),
    ("unknown-schema", 422, "Unknown schema", "The schema id or name is not registered."),
    ("timestamp-in-future", 422, "Timestamp in the future",
     "The reading's timestamp is further ahead of the server clock than "
     "CHAINSENSE_MAX_FUTURE_MS."),
    ("invalid-signature", 422, "Invalid signature",
     "The signature is not 65 bytes of 0x-hex (r, s, v), or recovers no key."),
    ("signature-mismatch", 401, "Signature does not match the device",
     "The EIP-712 signature recovers another address than `device`: the wrong key, chain id or "
     "verifying contract, or a field changed after signing."),
    ("unknown-device", 403, "Unknown device", "The device is not registered in the registry."),
    ("device-revoked", 403, "Device revoked", "The device was revoked; its new readings are "
     "refused (its old ones stay verifiable)."),
    ("device-rotated", 403, "Device key rotated",
     "The key was rotated out: a newer key signs for this device."),
    ("seq-conflict", 409, "Sequence number already used",
     "Another reading with this device and seq is stored (an identical replay gets 200 instead)."),
    ("seq-not-increasing", 409, "Sequence number not increasing",
     "The seq is not above the device's last stored seq."),
    ("registry-syncing", 503, "Device not yet in the store",
     "The device is active on chain but not yet mirrored in the store: retry in a moment."),
    # --- chain, proofs, settlement ------------------------------------------------------------
    ("invalid-proof", 422, "Invalid proof document", "Not a proof document; `field` names why."),
    ("chain-unavailable", 503, "Chain unavailable",
     "The chain's RPC endpoint does not answer, or failed repeatedly and its circuit breaker "
     "refuses calls until a probe finds it back. Retry after the Retry-After header's seconds."),
    (
        "store-unavailable",
        503,
        "Store unavailable",
        "The database is down, locked or its disk is full; nothing was stored. Retry after the "
        "Retry-After header's seconds.",
    ),
    ("chain-timeout", 504, "Chain timeout", "The chain did not answer in time."),
    ("transaction-reverted", 409, "Transaction reverted",
     "The contract refused the transaction; `error` and `arguments` are its custom error."),
    ("transaction-rejected", 409, "Transaction rejected by the node",
     "The node refused the transaction before running it (nonce, gas, funds)."),
    ("evidence-rejected", 422, "Evidence rejected", "The settlement contract refused the proof."),
    ("settlement-deadline", 409, "Outside the allowed time",
     "The settlement action is before or after its window."),
    ("not-authorized-onchain", 403, "Not authorized on-chain",
     "The account may not take this settlement action."),
    ("insufficient-funds", 402, "Insufficient funds",
     "The account lacks balance, allowance or an owed amount; retry after funding."),
    ("settlement-conflict", 409, "Settlement state conflict",
     "The settlement is not in a state that allows this action."),
    ("no-mandate", 404, "No market mandate", "The participant has no market agent mandate."),
    ("agent-not-allowed", 409, "Agent not allowed on-chain",
     "The participant has not allowed the platform's agent (EnergyMarket.setAgent)."),
)  # fmt: skip

_BY_STATUS = {
    400: "http-error",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
    504: "chain-timeout",
}


def type_uri(code: str) -> str:
    return f"/problems/{code}"


def code_for_status(status: int) -> str:
    """The generic problem type of an HTTP status (for errors no more specific type names)."""
    return _BY_STATUS.get(status, "internal-error" if status >= 500 else "http-error")


router = APIRouter(prefix="/problems", tags=["problems"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{title}</h1><p>{body}</p>{more}</main></body></html>
"""


@router.get(
    "",
    summary="Every problem type this API answers with",
    response_class=HTMLResponse,
    response_model=None,
    responses={200: {"content": {"application/json": {}}}},
)
async def list_problems(request: Request) -> HTMLResponse | JSONResponse:
    if _wants_json(request):
        return JSONResponse({"items": [_entry(p) for p in PROBLEM_TYPES.values()]})
    items = "".join(
        f'<li><a href="{type_uri(p.code)}">{p.code}</a> ({p.status}): {html.escape(p.title)}</li>'
        for p in PROBLEM_TYPES.values()
    )
    body = "Errors are RFC 9457 problem+json; their <code>type</code> is one of these pages."
    return HTMLResponse(_PAGE.format(title="Problem types", body=body, more=f"<ul>{items}</ul>"))


@router.get(
    "/{code}",
    summary="What one problem type means (the page a problem's `type` points at)",
    response_class=HTMLResponse,
    response_model=None,
    responses={
        200: {"content": {"application/json": {}}},
        404: {"description": "No such problem type"},
    },
)
async def get_problem(
    code: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,40}$")], request: Request
) -> HTMLResponse | JSONResponse:
    entry = PROBLEM_TYPES.get(code)
    if entry is None:
        raise HTTPException(404, "no such problem type; GET /problems lists them")
    if _wants_json(request):
        return JSONResponse(_entry(entry))
    return HTMLResponse(
        _PAGE.format(
            title=html.escape(entry.title),
            body=html.escape(entry.description),
            more=f'<p>HTTP status: {entry.status}. <a href="/problems">All problem types</a></p>',
        )
    )


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "json" in accept and "html" not in accept


def _entry(entry: ProblemType) -> dict[str, object]:
    return {
        "type": type_uri(entry.code),
        "code": entry.code,
        "status": entry.status,
        "title": entry.title,
        "description": entry.description,
    }
