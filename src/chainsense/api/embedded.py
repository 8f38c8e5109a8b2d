"""The API served in this process on a free local port, for the demo and its test: the same app
and lifespan as ``chainsense serve``, under uvicorn, inside the caller's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from chainsense.api.app import create_app
from chainsense.config import Settings
from chainsense.errors import ChainSenseError
from chainsense.platform import Platform

__all__ = ["serve_embedded"]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_embedded(
    settings: Settings, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, Platform]]:
    """Serve the platform on a free port; yield its base URL and the running platform."""
    app = create_app(settings)
    port = _free_port(host)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve(), name="embedded-api")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise ChainSenseError("the embedded API stopped while starting")
            await asyncio.sleep(0.05)
        yield f"http://{host}:{port}", app.state.platform
    finally:
        server.should_exit = True
        await task
