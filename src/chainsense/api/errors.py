"""The one place that maps ChainSense errors to HTTP: RFC 9457 problem+json responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chainsense.api.problems import PROBLEM_TYPES, code_for_status, type_uri
from chainsense.errors import (
    ChainSenseError,
    ChainTimeoutError,
    ChainUnavailableError,
    TransactionRejectedError,
    TransactionRevertedError,
)
from chainsense.observability.metrics import record_unavailable
from chainsense.provenance.proof import ProofFormatError
from chainsense.settlement.agent import AgentNotAllowedError, NoMandateError
from chainsense.settlement.errors import (
    DeadlineError,
    EvidenceRejectedError,
    InsufficientFundsError,
    NotAuthorizedError,
    SettlementError,
)
from chainsense.store.errors import StoreUnavailableError
from chainsense.telemetry.schemas import UnknownSchemaError

__all__ = [
    "AsciiJSONResponse",
    "ProblemResponse",
    "ascii_json",
    "domain_problem",
    "field_error",
    "install_error_handlers",
    "problem",
    "problem_body",
]

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)


def ascii_json(content: Any) -> bytes:
    """JSON rendered ASCII-only and compact: whatever a message echoes, the answer encodes."""
    return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class AsciiJSONResponse(JSONResponse):
    """JSON rendered ASCII-only: whatever a message echoes, the answer always encodes."""

    def render(self, content: Any) -> bytes:
        return ascii_json(content)


class ProblemResponse(AsciiJSONResponse):
    media_type = PROBLEM_JSON


def problem_body(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    type_: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one problem shape: ``type`` (a page under /problems: ``code`` names it, else the
    status's generic one; ``type_`` gives a whole URI instead), ``title``, ``status``, then
    ``detail`` and extension members (``field``, ``errors``, ...). Members that are None are
    left out."""
    body: dict[str, Any] = {
        "type": type_ or type_uri(code or code_for_status(status)),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update((k, v) for k, v in extra.items() if v is not None)
    return body


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    type_: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(status, title, detail, code=code, type_=type_, **extra)
    return ProblemResponse(body, status_code=status, headers=headers)


#: A settlement contract's refusal, by kind. 402 for funds: the request is fine but the
#: account lacks balance, allowance or an owed amount (a retry after funding succeeds).
_DOMAIN_CODES: tuple[tuple[type[ChainSenseError], str], ...] = (
    (EvidenceRejectedError, "evidence-rejected"),
    (DeadlineError, "settlement-deadline"),
    (NotAuthorizedError, "not-authorized-onchain"),
    (InsufficientFundsError, "insufficient-funds"),
    (SettlementError, "settlement-conflict"),
    (ProofFormatError, "invalid-proof"),
    (UnknownSchemaError, "unknown-schema"),
    (NoMandateError, "no-mandate"),
    (AgentNotAllowedError, "agent-not-allowed"),
    (ChainUnavailableError, "chain-unavailable"),
    (StoreUnavailableError, "store-unavailable"),
    (ChainTimeoutError, "chain-timeout"),
    (TransactionRevertedError, "transaction-reverted"),
    (TransactionRejectedError, "transaction-rejected"),
)


RETRY_AFTER_S = 2
"""Seconds a client is asked to wait after a 503 (store or chain unavailable)."""


def _status_of(exc: ChainSenseError) -> tuple[int, str, str]:
    """Status, title and problem type code of a domain error."""
    code = next((c for cls, c in _DOMAIN_CODES if isinstance(exc, cls)), "internal-error")
    entry = PROBLEM_TYPES[code]
    return entry.status, entry.title, code


def _jsonable(value: Any) -> Any:
    """Decoded revert arguments as JSON: bytes as 0x-hex, containers recursively."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def domain_problem(exc: ChainSenseError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """The answer to a domain error: status, problem body, extra headers (Retry-After of a
    503); an unexpected one is logged. Also counts a 503 in the metrics."""
    status, title, code = _status_of(exc)
    if status >= 500 and code == "internal-error":
        log.exception("unhandled domain error", exc_info=exc)
        body = problem_body(500, title, "an unexpected error was logged by the server", code=code)
        return 500, body, None
    extra: dict[str, Any] = {}
    if isinstance(exc, TransactionRevertedError | SettlementError):
        extra = {"error": exc.error_name, "arguments": _jsonable(exc.error_args)}
        if exc.tx_hash:
            extra["tx_hash"] = exc.tx_hash
    elif isinstance(exc, ProofFormatError):
        extra = {"field": exc.field}
    body = problem_body(status, title, str(exc), code=code, **extra)
    headers = None
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        record_unavailable("store" if isinstance(exc, StoreUnavailableError) else "chain")
    return status, body, headers


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChainSenseError)
    async def _domain(_: Request, exc: ChainSenseError) -> JSONResponse:
        status, body, headers = domain_problem(exc)
        response = ProblemResponse(body, status_code=status)
        for name, value in (headers or {}).items():
            response.headers[name] = value  # after the content headers, as before
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        detail = str(exc.detail) if exc.detail and exc.detail != title else None
        return problem(exc.status_code, title, detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "Internal error", "an unexpected error was logged by the server")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        raw = exc.errors()
        if any(e.get("type") == "json_invalid" for e in raw):
            return problem(
                400, "Malformed JSON", "the request body is not valid JSON", code="malformed-json"
            )
        errors = [field_error(e) for e in raw]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem(
            422,
            "Invalid request",
            f"invalid fields: {fields}",
            code="invalid-request",
            field=errors[0]["field"] if errors else None,
            errors=errors,
        )


_PLACES = {"body", "query", "path", "header", "cookie"}

#: Pydantic error types, in the API's words.
_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field: this object does not take it",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer, without a fraction",
    "int_parsing_size": "is too large a number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_unicode": "must be a UTF-8 string",
    "none_required": "must be null",
    "union_tag_invalid": "has an unknown kind",
    "json_type": "must be JSON",
}


def field_error(error: Mapping[str, Any]) -> dict[str, str]:
    """One pydantic error as ``{"field", "in", "message"}``: the field as a path
    (``loggers[2]``, ``senml[0].v``), the place it was read from, a message without Python."""
    loc = [p for p in error.get("loc", ()) if not _is_model_name(p)]
    place = str(loc.pop(0)) if loc and loc[0] in _PLACES else "body"
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    kind = str(error.get("type", ""))
    message = _MESSAGES.get(kind) or _rephrase(str(error.get("msg", "is invalid")))
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and "pattern" in ctx:
        message = f"must match the pattern {ctx['pattern']}"
    return {"field": path or "(body)", "in": place, "message": message}


def _is_model_name(part: object) -> bool:
    # Unions put the member's name in the path (e.g. "function-after[...]", "int", "str").
    return isinstance(part, str) and ("[" in part or part in ("int", "str", "float", "bool"))


def _rephrase(message: str) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if message.startswith("Input should be "):
        return "must be " + message.removeprefix("Input should be ")
    if message.startswith("String should "):
        return "must " + message.removeprefix("String should ")
    if message.startswith("List should "):
        return "must " + message.removeprefix("List should ")
    return message[:1].lower() + message[1:]
