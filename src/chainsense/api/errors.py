"""The one place that maps ChainSense errors to HTTP: RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chainsense.errors import (
    ChainSenseError,
    ChainTimeoutError,
    ChainUnavailableError,
    TransactionRejectedError,
    TransactionRevertedError,
)
from chainsense.provenance.proof import ProofFormatError
from chainsense.settlement.agent import AgentNotAllowedError, NoMandateError
from chainsense.settlement.errors import (
    DeadlineError,
    EvidenceRejectedError,
    InsufficientFundsError,
    NotAuthorizedError,
    SettlementError,
)
from chainsense.telemetry.schemas import UnknownSchemaError

__all__ = ["install_error_handlers", "problem"]

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)


def problem(
    status: int, title: str, detail: str | None = None, *, type_: str = "about:blank", **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


#: A settlement contract's refusal, by kind. 402 for funds: the request is fine but the
#: account lacks balance, allowance or an owed amount (a retry after funding succeeds).
_SETTLEMENT_STATUS: tuple[tuple[type[SettlementError], int, str], ...] = (
    (EvidenceRejectedError, 422, "Evidence rejected"),
    (DeadlineError, 409, "Outside the allowed time"),
    (NotAuthorizedError, 403, "Not authorized on-chain"),
    (InsufficientFundsError, 402, "Insufficient funds"),
    (SettlementError, 409, "Settlement state conflict"),
)


def _status_of(exc: ChainSenseError) -> tuple[int, str]:
    if isinstance(exc, SettlementError):
        return next((s, t) for cls, s, t in _SETTLEMENT_STATUS if isinstance(exc, cls))
    if isinstance(exc, ProofFormatError):
        return 422, "Invalid proof document"
    if isinstance(exc, UnknownSchemaError):
        return 422, "Unknown schema"
    if isinstance(exc, NoMandateError):
        return 404, "No market mandate"
    if isinstance(exc, AgentNotAllowedError):
        return 409, "Agent not allowed on-chain"
    if isinstance(exc, ChainUnavailableError):
        return 503, "Chain unavailable"
    if isinstance(exc, ChainTimeoutError):
        return 504, "Chain timeout"
    if isinstance(exc, TransactionRevertedError):
        return 409, "Transaction reverted"
    if isinstance(exc, TransactionRejectedError):
        return 409, "Transaction rejected by the node"
    return 500, "Internal error"


def _jsonable(value: Any) -> Any:
    """Decoded revert arguments as JSON: bytes as 0x-hex, containers recursively."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChainSenseError)
    async def _domain(_: Request, exc: ChainSenseError) -> JSONResponse:
        status, title = _status_of(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, TransactionRevertedError | SettlementError):
            extra = {"error": exc.error_name, "arguments": _jsonable(exc.error_args)}
            if exc.tx_hash:
                extra["tx_hash"] = exc.tx_hash
        elif isinstance(exc, ProofFormatError):
            extra = {"field": exc.field}
        return problem(status, title, str(exc), **extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        detail = str(exc.detail) if exc.detail and exc.detail != title else None
        response = problem(exc.status_code, title, detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "Internal error", "an unexpected error was logged by the server")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem(400, "Malformed JSON", "the request body is not valid JSON")
        fields = ", ".join(e["field"] for e in errors)
        return problem(422, "Invalid request", f"invalid fields: {fields}", errors=errors)
