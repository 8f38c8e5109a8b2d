"""The FastAPI app factory. Nothing is built at import time: ``create_app(settings)`` builds the
app, and its lifespan opens the chain (and, later, the store and detectors) and closes them."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from chainsense import __version__
from chainsense.api.body import StrictJSONBody
from chainsense.api.docs import install_api_docs
from chainsense.api.errors import PROBLEM_JSON, install_error_handlers
from chainsense.api.fastingest import ChainSenseAPI, FastIngest
from chainsense.api.observability import RequestObservabilityMiddleware
from chainsense.api.observability import router as metrics_router
from chainsense.api.problems import router as problems_router
from chainsense.api.routes import probes, v1
from chainsense.api.routes.readings import BODY_MODELS
from chainsense.config import Settings
from chainsense.errors import ChainSenseError
from chainsense.observability.tracing import configure_tracing, instrument_engine
from chainsense.platform import Platform, open_platform
from chainsense.redact import install_log_redaction, settings_secrets
from chainsense.web import mount_dashboard

if TYPE_CHECKING:
    from chainsense.api.limits import EdgeRateLimit
    from chainsense.api.shedding import Shedder

__all__ = ["create_app", "create_worker_app"]

log = logging.getLogger(__name__)


def create_worker_app() -> ChainSenseAPI:
    """The app of one ``serve --workers N`` process: settings from the environment, and this
    process's logging set up the same way as the parent's."""
    from chainsense.observability.logs import configure_logging
    from chainsense.serve_cli import report_startup_failures

    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings)
    app.access_log = settings.access_log  # uvicorn's is off (serve_cli.serve_workers)
    report_startup_failures(app)
    watch_shared_accept_queue(app)
    return app


def watch_shared_accept_queue(app: ChainSenseAPI) -> None:
    """Let this worker's shedder see the accept queue of the socket the workers share (as one
    process's does: cli/serve.py), with the share of it this worker will take."""
    from chainsense.api.shedding import accept_backlog, inherited_listener
    from chainsense.serve_cli import WORKERS_ENV

    workers, _, port = os.environ.get(WORKERS_ENV, "").partition(":")
    if not port:
        return  # not started by `serve --workers`
    sock = inherited_listener(int(port))
    if sock is None:
        log.warning("shedding: the listening socket on port %s was not found in this worker", port)
        return
    app.state.listener = sock  # kept open as long as the app
    app.state.shedder.backlog = accept_backlog(sock, share=int(workers))
    log.debug("shedding: watching the accept queue of port %s, shared by %s workers", port, workers)


def create_app(settings: Settings | None = None, *, span_exporter: Any = None) -> ChainSenseAPI:
    """The app; ``span_exporter`` (an OpenTelemetry SpanExporter) turns tracing on for tests,
    as ``CHAINSENSE_OTLP_ENDPOINT`` does in production."""
    settings = settings or Settings()
    install_log_redaction(settings_secrets(settings))  # docs/security.md

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(settings) as platform:
            app.state.platform = platform
            await _open_limits(app, settings, platform)
            instrument_engine(platform.store.engine, provider)
            # Everything built so far lives as long as the process: keep it out of the cyclic
            # collector's full passes (measured: ~110 ms pauses every ~16k readings otherwise).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                if app.state.limiter is not None:
                    await app.state.limiter.close()

    app = ChainSenseAPI(
        title="ChainSense",
        version=__version__,
        summary="A trust layer for IoT data: signed readings anchored on an EVM chain.",
        lifespan=lifespan,
        docs_url=None,  # served from bundled assets by install_api_docs (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.limiter = None
    install_error_handlers(app)
    app.add_middleware(
        StrictJSONBody, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    shedder, edge = _install_protections(app, settings)
    app.state.shedder = shedder
    app.add_middleware(RequestObservabilityMiddleware)
    app.include_router(probes)
    app.include_router(metrics_router)
    provider = configure_tracing(app, endpoint=settings.otlp_endpoint, exporter=span_exporter)
    if settings.fast_ingest and provider is None and not settings.cors_origins:
        # POST /v1/readings without the router and the stack (api/fastingest.py); with tracing
        # or CORS on, the FastAPI route below serves it.
        app.fast_ingest = FastIngest(
            app,
            shedder=shedder,
            edge=edge,
            gate=StrictJSONBody(
                _no_app, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
            ),
        )
    app.include_router(v1)
    app.include_router(problems_router)
    install_api_docs(app)
    mount_dashboard(app)
    _document_body_models(app)
    return app


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the fast path's gate only reads and parses")


def _install_protections(app: FastAPI, settings: Settings) -> tuple[Shedder, EdgeRateLimit | None]:
    """Rate limits, overload shedding, security headers, CORS (docs/security.md). The last
    added runs first: CORS, headers, shedding, then rate limits. Returns the shedding state and
    the rate limit, shared with the fast path."""
    from chainsense.api.limits import EdgeRateLimit, Policies, RateLimitMiddleware
    from chainsense.api.security import SecurityHeadersMiddleware, install_cors
    from chainsense.api.shedding import LoadShedMiddleware, Shedder

    async def authenticate(scope: Any, key: str) -> int | None:
        platform = getattr(scope["app"].state, "platform", None)
        if platform is None:
            return None
        try:
            record = await platform.store.api_keys.authenticate(key)
        except ChainSenseError:
            return None  # the store is down: count the request by address; the route answers
        return None if record is None else int(record.id)

    edge = None
    if settings.rate_limit_enabled:
        edge = EdgeRateLimit(
            limiter=lambda: app.state.limiter,
            policies=Policies.from_settings(settings),
            authenticate=authenticate,
        )
        app.add_middleware(RateLimitMiddleware, edge=edge)
    shedder = Shedder(
        max_in_flight=settings.shed_max_in_flight,
        max_queue=settings.shed_max_queue,
        queue_timeout=settings.shed_queue_timeout,
        retry_after=settings.shed_retry_after,
        max_wait=settings.shed_max_wait,
    )
    app.add_middleware(LoadShedMiddleware, shedder=shedder)
    app.add_middleware(SecurityHeadersMiddleware)
    install_cors(app, settings.cors_origins)
    return shedder, edge


async def _open_limits(app: FastAPI, settings: Settings, platform: Platform) -> None:
    """The rate-limit store (Redis when configured) and the per-device admission hook."""
    if not settings.rate_limit_enabled:
        return
    from chainsense.api.limits import Policies, device_admission
    from chainsense.limits import open_limiter

    limiter = open_limiter(settings.redis_url)
    app.state.limiter = limiter
    platform.ingest.admit = device_admission(limiter, Policies.from_settings(settings).device)


def _document_body_models(app: FastAPI) -> None:
    """Add the models POST /v1/readings parses by hand to the OpenAPI components."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in BODY_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            _document_problems(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_FASTAPI_422 = {
    "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
}


def _document_problems(schema: dict[str, Any]) -> None:
    """Every error is problem+json (api/errors.py); a route that needs an API key answers 401
    and 403 (api/deps.py); one with a JSON body answers 400 when it does not parse, 413 when it
    is too large and 415 when it is not JSON (api/body.py)."""
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            responses = operation["responses"]
            if "requestBody" in operation:  # the body gate, api/body.py
                responses.setdefault("400", {"description": "Malformed JSON"})
                responses.setdefault("413", {"description": "Body too large"})
                responses.setdefault("415", {"description": "Not a JSON body"})
            if operation.get("security"):
                responses.setdefault("401", {"description": "No API key, or an unknown one"})
                responses.setdefault("403", {"description": "The API key's scope is too low"})
            for status, response in responses.items():
                content = response.get("content")
                if int(status) >= 400 and content in (None, _FASTAPI_422, {PROBLEM_JSON: {}}):
                    response["content"] = dict(problem)
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
