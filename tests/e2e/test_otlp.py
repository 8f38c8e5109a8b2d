"""Traces over real OTLP/HTTP: ``chainsense serve`` with ``CHAINSENSE_OTLP_ENDPOINT`` pointed at
a collector of the test's own, which decodes what arrives with OpenTelemetry's protobuf
definitions (opentelemetry-proto), not with the SDK that sent it. One reading's request is one
trace; the anchorer's ``batch.seal`` span links to the commit spans of the requests it sealed,
``batch.anchor`` to the seal."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from chainsense.identity import DeviceKey
from tests.e2e._serve import Serve, signed_readings

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@dataclass
class Span:
    name: str
    trace_id: bytes
    span_id: bytes
    parent: bytes
    links: list[tuple[bytes, bytes]]
    attributes: dict[str, Any] = field(default_factory=dict)


class Collector(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver (protobuf bodies on /v1/traces)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.paths: set[str] = set()
        super().__init__(("127.0.0.1", 0), _Receive)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def named(self, name: str) -> list[Span]:
        return [s for s in list(self.spans) if s.name == name]


class _Receive(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.paths.add(self.path)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.server.spans.append(
                        Span(
                            span.name,
                            span.trace_id,
                            span.span_id,
                            span.parent_span_id,
                            [(link.trace_id, link.span_id) for link in span.links],
                            {
                                a.key: a.value.int_value or a.value.string_value
                                for a in span.attributes
                            },
                        )
                    )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_readings_trace_and_its_batch_arrive_over_otlp(
    tmp_path: Path, collector: Collector
) -> None:
    server = Serve(
        tmp_path / "data",
        otlp_endpoint=collector.endpoint,
        anchoring="true",
        batch_max_age="0.5",
    )
    server.create_keys("ops")
    with server.running():
        key = DeviceKey.generate()
        server.register(key, server.keys["ops"])
        domain = server.domain()
        readings = list(signed_readings(key, domain, 3))
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for reading in readings[:2]:
                assert client.post("/v1/readings", json=reading).status_code == 201
            batch = client.post("/v1/readings", json={"readings": readings[2:]})
            assert batch.status_code == 200
        deadline = time.monotonic() + 60  # sealing, anchoring and the exporter's batching
        while time.monotonic() < deadline and not collector.named("batch.anchor"):
            time.sleep(0.5)
    assert collector.paths == {"/v1/traces"}
    requests = collector.named("POST /v1/readings")
    commits = collector.named("ingest.commit")
    assert len(requests) == len(commits) == 3
    by_span = {r.span_id: r for r in requests}
    for commit in commits:  # each commit is a child of its own request's span, in its trace
        assert commit.trace_id == by_span[commit.parent].trace_id
    seals = [s for s in collector.named("batch.seal") if s.links]
    assert sum(s.attributes["batch.readings"] for s in seals) == 3
    linked = {link for seal in seals for link in seal.links}
    assert linked == {(c.trace_id, c.span_id) for c in commits}
    (anchor, *_) = collector.named("batch.anchor")
    (seal,) = [s for s in seals if s.attributes["batch.id"] == anchor.attributes["batch.id"]]
    assert anchor.links == [(seal.trace_id, seal.span_id)]
    assert str(anchor.attributes["tx"]).startswith("0x")
