"""Structured logs: every line an event with fields (structlog over the standard library).

:func:`configure_logging` routes every standard-library logger (ChainSense's own, uvicorn's
access and error logs, web3, httpx) through one structlog formatter, so each line carries a UTC
timestamp, the level, the logger, the request id (bound by the API middleware for the request
being served) and the OpenTelemetry trace id (when a span is active). ``json`` format writes one
JSON object per line (for a log shipper); ``console`` a readable ``key=value`` line.

Application events (startup, deployment, batch sealed / anchored, anomaly, leader change, RPC
down / up) are logged at INFO; per-request RPC chatter (httpx, web3) only at DEBUG.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["bind_request_id", "configure_logging", "info_line", "reset_request_id"]

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chainsense_request_id", default=None
)

#: Loggers whose INFO lines are per-request chatter: shown only at DEBUG.
CHATTY = (
    "httpx",
    "httpcore",
    "web3",
    "urllib3",
    "asyncio",
    "aiosqlite",
    "alembic.runtime.plugins",
    "gmqtt",
)


def bind_request_id(request_id: str) -> contextvars.Token[str | None]:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def _add_ids(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = _request_id.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    try:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event.setdefault("span_id", format(context.span_id, "016x"))
    except ImportError:  # pragma: no cover - opentelemetry is a dependency
        pass
    return event


def _drop_color(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event


class _Direct:
    """What :func:`info_line` needs to write a line as the configured handler would."""

    def __init__(self, handler: logging.StreamHandler[Any], stamper: Any, renderer: Any) -> None:
        self.handler = handler
        self.stamper = stamper
        self.renderer = renderer


_direct: _Direct | None = None


def info_line(logger_name: str, message: str) -> None:
    """Log ``message`` at INFO as logger ``logger_name`` would through the root handler, the
    same line byte for byte (the fields of the pre-chain in :func:`configure_logging`, then the
    renderer), without a LogRecord, the record factory or the formatter's wrapping: about a
    quarter of the cost, for the per-request access line. Secrets are scrubbed as the log
    redaction does. Through ``logging`` as usual when logging is not as configure_logging left it
    (another handler, filters, a higher level)."""
    from chainsense.redact import scrub_logged

    if not logging.getLogger(logger_name).isEnabledFor(logging.INFO):
        return
    direct = _direct
    root = logging.getLogger()
    if (
        direct is None
        or root.handlers != [direct.handler]
        or root.filters
        or direct.handler.filters
        or not root.isEnabledFor(logging.INFO)
    ):
        record = logging.getLogger(logger_name).makeRecord(
            logger_name, logging.INFO, __file__, 0, message, (), None
        )
        root.handle(record)
        return
    event: MutableMapping[str, Any] = {"event": scrub_logged(message)}
    event = structlog.contextvars.merge_contextvars(None, "info", event)
    event["level"] = "info"
    event["logger"] = logger_name
    event = direct.stamper(None, "info", event)
    event = _add_ids(None, "info", event)
    line = direct.renderer(None, "info", event)
    handler = direct.handler
    with handler.lock:  # type: ignore[union-attr]
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:  # as StreamHandler.emit does
            handler.handleError(logging.makeLogRecord({"msg": message}))


def configure_logging(*, fmt: str = "console", level: str = "INFO") -> None:
    """Route all standard-library logging through structlog. Idempotent."""
    global _direct
    level_no = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        stamper,
        _add_ids,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_color, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    _direct = _Direct(handler, stamper, renderer)
    root = logging.getLogger()
    for old in list(root.handlers):  # basicConfig's, or ours from an earlier call
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    chatty_level = logging.DEBUG if level_no <= logging.DEBUG else logging.WARNING
    for name in CHATTY:
        logging.getLogger(name).setLevel(chatty_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _identity(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return event


#: uvicorn's own logging config would install handlers without timestamps; ``serve`` passes
#: this instead, so uvicorn's loggers propagate to the root handler above.
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "uvicorn": {"level": "INFO", "propagate": True},
        "uvicorn.error": {"level": "INFO", "propagate": True},
        "uvicorn.access": {"level": "INFO", "propagate": True},
    },
}
