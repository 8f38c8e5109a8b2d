"""One trace per reading: the request's span, its verification and its commit; the sealing and
anchoring of its batch linked to it (in-memory exporter; the same provider exports over OTLP
when CHAINSENSE_OTLP_ENDPOINT is set)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chainsense.api import create_app
from chainsense.api.app import create_app as create_app_direct
from chainsense.config import Settings
from chainsense.identity import DeviceKey
from tests.api.conftest import Api, _create_key, own_anchorer
from tests.support import free_port

pytestmark = pytest.mark.chain

# One exporter for the module: OpenTelemetry installs the first tracer provider of the process
# for good, so the spans the platform opens itself go to the first test's exporter.
EXPORTER = InMemorySpanExporter()


def test_a_reading_is_one_trace_from_request_to_commit(tmp_path: Path) -> None:
    assert create_app is create_app_direct
    exporter = EXPORTER
    settings = Settings(data_dir=tmp_path, anvil_port=free_port(), registry_poll_interval=0.25)
    with TestClient(create_app(settings, span_exporter=exporter)) as client:
        platform = client.app.state.platform  # type: ignore[attr-defined]
        api = Api(client, platform, {"operator": _create_key(client, platform, "operator")})
        key = DeviceKey.generate()
        api.register(key)
        exporter.clear()
        response = client.post("/v1/readings", json=api.sign(key, 1))
        assert response.status_code == 201
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    verify, commit = by_name["ingest.verify"], by_name["ingest.commit"]
    request = next(s for s in spans if s.name == "POST /v1/readings")
    assert verify.context.trace_id == commit.context.trace_id == request.context.trace_id
    assert verify.parent is not None
    assert commit.parent is not None
    assert verify.parent.span_id == request.context.span_id
    assert commit.parent.span_id == request.context.span_id


def test_the_seal_and_anchor_of_a_batch_link_to_the_requests_that_stored_it(
    tmp_path: Path,
) -> None:
    exporter = EXPORTER
    # Only the test's own anchorer: the platform's would seal and anchor the same batch too.
    settings = Settings(
        data_dir=tmp_path, anvil_port=free_port(), registry_poll_interval=0.25, anchoring=False
    )
    with TestClient(create_app(settings, span_exporter=exporter)) as client:
        platform = client.app.state.platform  # type: ignore[attr-defined]
        api = Api(client, platform, {"operator": _create_key(client, platform, "operator")})
        key, other = DeviceKey.generate(), DeviceKey.generate()
        api.register(key)
        api.register(other)
        exporter.clear()
        assert client.post("/v1/readings", json=api.sign(key, 1)).status_code == 201
        first_of_other = api.sign(other, 1)
        assert client.post("/v1/readings", json=first_of_other).status_code == 201
        batch = {"readings": [api.sign(key, 2), api.sign(key, 3)]}
        assert client.post("/v1/readings", json=batch).status_code == 200
        # A replay stores nothing: its request's commit is linked to no batch.
        assert client.post("/v1/readings", json=first_of_other).status_code == 200
        anchorer = own_anchorer(platform)
        assert client.portal is not None
        (sealed,) = client.portal.call(anchorer.seal_now)
        (anchored,) = client.portal.call(anchorer.anchor_sealed)
    spans = exporter.get_finished_spans()
    *commits, replay = sorted(
        (s for s in spans if s.name == "ingest.commit"), key=lambda s: s.start_time or 0
    )
    assert len(commits) == 3
    (seal,) = [s for s in spans if s.name == "batch.seal"]
    assert seal.attributes is not None
    assert seal.attributes["batch.id"] == sealed.id == anchored.id
    assert (seal.attributes["batch.readings"], seal.attributes["requests"]) == (4, 3)
    assert sorted(link.context.span_id for link in seal.links) == sorted(
        c.context.span_id for c in commits
    )
    assert {link.context.trace_id for link in seal.links} == {c.context.trace_id for c in commits}
    assert replay.context.span_id not in {link.context.span_id for link in seal.links}
    (anchor,) = [s for s in spans if s.name == "batch.anchor"]
    assert anchor.attributes is not None
    assert anchor.attributes["batch.id"] == sealed.id
    assert anchor.attributes["tx"] == "0x" + bytes(anchored.tx_hash or b"").hex()
    assert [link.context.span_id for link in anchor.links] == [seal.context.span_id]
    assert anchor.start_time is not None
    assert anchor.end_time is not None
    assert anchor.start_time <= anchor.end_time
