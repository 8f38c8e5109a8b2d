"""OpenTelemetry traces: off unless an exporter is configured.

:func:`configure_tracing` installs a tracer provider for this app with the FastAPI and httpx
instrumentations, exporting to ``CHAINSENSE_OTLP_ENDPOINT`` (OTLP over HTTP) or to the exporter a
test passes (SQL spans: see :func:`instrument_engine`). The ingest pipeline opens
``ingest.verify`` and ``ingest.commit`` spans inside the request's span, so one trace shows a
reading from the request through verification to the group commit that made it durable. With no
provider configured, OpenTelemetry's API is a no-op and costs next to nothing.

The sealing and anchoring of a batch happen later, in the anchorer, once for many requests: its
``batch.seal`` span links to the ``ingest.commit`` span of each request whose readings it seals
(up to :data:`MAX_LINKS`; the ``requests`` attribute says how many there were), and its
``batch.anchor`` span, from sealing to the recorded anchor, links to the ``batch.seal`` span.
The commit spans are remembered per reading in this process only (:data:`MAX_REMEMBERED`
readings, oldest forgotten first): with ``serve --workers N`` the seal span links the requests
the anchorer's own process served.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "MAX_LINKS",
    "MAX_REMEMBERED",
    "anchor_span",
    "configure_tracing",
    "instrument_engine",
    "remember_commit",
    "seal_span",
    "sealed",
    "tracer",
    "tracing_on",
]

#: Links a ``batch.seal`` span carries at most (the SDK's default span link limit).
MAX_LINKS = 128
#: Readings whose commit span this process remembers until their batch is sealed.
MAX_REMEMBERED = 200_000
_MAX_SEALS = 10_000

_commits: OrderedDict[int, trace.SpanContext] = OrderedDict()
_seals: OrderedDict[int, trace.SpanContext] = OrderedDict()


def tracer() -> trace.Tracer:
    return trace.get_tracer("chainsense")


def tracing_on() -> bool:
    """Whether a tracer provider was installed in this process: without one, the ingest path
    opens no spans at all (even no-op spans cost ~5% of the event loop under load)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def configure_tracing(
    app: FastAPI, *, endpoint: str | None, exporter: SpanExporter | None = None
) -> Any:
    """Trace ``app`` when an endpoint or an exporter is given; returns the provider or None."""
    if endpoint is None and exporter is None:
        return None
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from chainsense import __version__

    provider = TracerProvider(
        resource=Resource.create({"service.name": "chainsense", "service.version": __version__})
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="metrics")
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    app.state.tracer_provider = provider
    return provider


def instrument_engine(engine: AsyncEngine, provider: Any) -> None:
    """SQL statements as spans: NOT enabled. opentelemetry-instrumentation-sqlalchemy declares
    SQLAlchemy < 2.1 (2.1 is installed); forced past its version check it raised "deque mutated
    during iteration" inside the anchorer in a test. The group commit's span stands for the SQL
    until the instrumentation supports 2.1."""
    del engine, provider


def _bounded_put(table: OrderedDict[int, trace.SpanContext], key: int, value: trace.SpanContext,
                 limit: int) -> None:  # fmt: skip
    table[key] = value
    while len(table) > limit:
        table.popitem(last=False)


def remember_commit(reading_ids: Iterable[int | None], span: trace.Span) -> None:
    """The readings ``reading_ids`` were made durable by the commit of ``span``: their batch's
    seal span will link to it."""
    context = span.get_span_context()
    if not context.is_valid:
        return
    for reading_id in reading_ids:
        if reading_id is not None:
            _bounded_put(_commits, reading_id, context, MAX_REMEMBERED)


@contextlib.contextmanager
def seal_span(reading_ids: Iterable[int]) -> Iterator[trace.Span | None]:
    """A ``batch.seal`` span linked to the commit spans of the requests that stored
    ``reading_ids`` (None, and nothing remembered, when tracing is off). The caller sets
    ``batch.id`` with :func:`sealed` once the batch has one."""
    if not tracing_on():
        yield None
        return
    requests: dict[int, trace.SpanContext] = {}
    for reading_id in reading_ids:
        context = _commits.pop(reading_id, None)
        if context is not None:
            requests.setdefault(context.span_id, context)
    links = [trace.Link(c) for c in list(requests.values())[:MAX_LINKS]]
    attributes = {"requests": len(requests), "requests.linked": len(links)}
    with tracer().start_as_current_span("batch.seal", links=links, attributes=attributes) as span:
        yield span


def sealed(span: trace.Span | None, batch_id: int, readings: int, root: bytes) -> None:
    """Name the batch ``span`` sealed, and remember the span for the batch's anchoring."""
    if span is None:
        return
    span.set_attributes({"batch.id": batch_id, "batch.readings": readings,
                         "batch.root": "0x" + root.hex()})  # fmt: skip
    _bounded_put(_seals, batch_id, span.get_span_context(), _MAX_SEALS)


def anchor_span(batch_id: int, sealed_at_ns: int, attributes: dict[str, Any]) -> None:
    """A ``batch.anchor`` span for a batch recorded as anchored now, from its sealing on,
    linked to its ``batch.seal`` span when this process sealed it."""
    if not tracing_on():
        return
    seal = _seals.pop(batch_id, None)
    links = [trace.Link(seal)] if seal is not None else []
    span = tracer().start_span(
        "batch.anchor",
        links=links,
        attributes={"batch.id": batch_id, **attributes},
        start_time=sealed_at_ns,
    )
    span.end()
