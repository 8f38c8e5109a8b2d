"""One trace per reading: the request's span, its verification and its commit (in-memory
exporter; the same provider exports over OTLP when CHAINSENSE_OTLP_ENDPOINT is set)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chainsense.api import create_app
from chainsense.api.app import create_app as create_app_direct
from chainsense.config import Settings
from chainsense.identity import DeviceKey
from tests.api.conftest import Api, _create_key
from tests.support import free_port

pytestmark = pytest.mark.chain


def test_a_reading_is_one_trace_from_request_to_commit(tmp_path: Path) -> None:
    assert create_app is create_app_direct
    exporter = InMemorySpanExporter()
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
