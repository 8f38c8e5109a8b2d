"""The FastAPI app factory. Nothing is built at import time: ``create_app(settings)`` builds the
app, and its lifespan opens the chain (and, later, the store and detectors) and closes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chainsense import __version__
from chainsense.api.errors import install_error_handlers
from chainsense.api.routes import probes, v1
from chainsense.chain.runtime import open_chain
from chainsense.config import Settings
from chainsense.web import mount_dashboard

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_chain(settings) as chain:
            app.state.chain = chain
            yield

    app = FastAPI(
        title="ChainSense",
        version=__version__,
        summary="A trust layer for IoT data: signed readings anchored on an EVM chain.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(probes)
    app.include_router(v1)
    mount_dashboard(app)
    return app
