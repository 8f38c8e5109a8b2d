"""The access log: one line per HTTP request, written by the app instead of uvicorn.

The same line as uvicorn's access log (logger ``uvicorn.access``, message
``client - "METHOD path HTTP/version" status``, written when the response starts, with the
request id and trace id of the request), through :func:`chainsense.observability.logs.info_line`,
which renders it without building a LogRecord: under 200 one-reading devices uvicorn's access
log took 11-13% of the event loop's time. ``chainsense serve`` turns uvicorn's off and this one
on when ``CHAINSENSE_ACCESS_LOG`` is true (the default); tests and embedded servers log none.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Scope, Send
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from chainsense.observability.logs import info_line

__all__ = ["log_access", "logging_send"]

LOGGER = "uvicorn.access"


def log_access(scope: Scope, status: int) -> None:
    """The access line of the request ``scope``, answered ``status``."""
    asgi: Any = scope
    client = get_client_addr(asgi)
    request = f"{scope['method']} {get_path_with_query_string(asgi)} HTTP/{scope['http_version']}"
    info_line(LOGGER, f'{client} - "{request}" {status}')


def logging_send(scope: Scope, send: Send) -> Send:
    """``send``, logging the access line when the response starts."""

    async def send_logged(message: Message) -> None:
        if message["type"] == "http.response.start":
            log_access(scope, message["status"])
        await send(message)

    return send_logged
