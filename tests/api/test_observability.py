"""/metrics, request ids and structured logs on a running platform (SQLite, real Anvil)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from chainsense.identity import DeviceKey
from chainsense.observability.metrics import metrics, record_rate_limited
from chainsense.observability.sampler import sample_once
from tests.api.conftest import Api, make_api

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("observability"))


def _value(name: str, **labels: str) -> float:
    value = metrics().registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics_count_requests_readings_and_commits(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    stored = _value("chainsense_readings_ingested_total", transport="http", result="stored")
    rejected = _value("chainsense_readings_ingested_total", transport="http", result="rejected")
    posts = _value(
        "chainsense_http_requests_total", method="POST", route="/v1/readings", status="201"
    )
    commits = _value("chainsense_commit_duration_seconds_count")

    response = api.client.post("/v1/readings", json=api.sign(key, 1))
    assert response.status_code == 201
    assert len(response.headers["x-request-id"]) >= 8
    bad = api.sign(key, 2) | {"signature": "0x" + "11" * 65}
    assert api.client.post("/v1/readings", json=bad).status_code == 422

    assert _value("chainsense_readings_ingested_total", transport="http", result="stored") == (
        stored + 1
    )
    assert _value("chainsense_readings_ingested_total", transport="http", result="rejected") == (
        rejected + 1
    )
    assert _value(
        "chainsense_http_requests_total", method="POST", route="/v1/readings", status="201"
    ) == (posts + 1)
    assert _value("chainsense_commit_duration_seconds_count") == commits + 1

    # a route with a path parameter is counted by its template, never by the address
    api.client.get(f"/v1/devices/{key.address}", headers=api.auth("reader"))
    text = api.client.get("/metrics").text
    assert 'route="/v1/devices/{address}"' in text
    assert key.address not in text
    assert key.address.lower() not in text
    assert "chainsense_build_info{" in text
    assert 'chainsense_leader{role="anchorer"} 1.0' in text


def test_a_client_request_id_is_echoed(api: Api) -> None:
    response = api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = api.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"


def test_sampled_gauges_and_rate_limit_counter(api: Api) -> None:
    assert api.client.portal is not None
    assert api.client.portal.call(sample_once, api.platform) is True
    assert _value("chainsense_chain_rpc_up") == 1
    assert _value("chainsense_chain_head_block") >= 1
    assert _value("chainsense_anchorer_balance_wei") > 0
    before = _value("chainsense_rate_limited_requests_total", policy="key")
    record_rate_limited("key")
    assert _value("chainsense_rate_limited_requests_total", policy="key") == before + 1


LOG_SCRIPT = """
import logging
from chainsense.observability.logs import bind_request_id, configure_logging
configure_logging(fmt="{fmt}")
bind_request_id("req-42")
logging.getLogger("chainsense.provenance.anchorer").info("sealed batch %d", 7)
logging.getLogger("httpx").info("HTTP Request: POST http://rpc")
"""


def test_json_logs_carry_timestamp_level_logger_and_request_id() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT.format(fmt="json")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stderr
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 1  # the httpx chatter is below the level shown
    line = lines[0]
    assert line["event"] == "sealed batch 7"
    assert line["level"] == "info"
    assert line["logger"] == "chainsense.provenance.anchorer"
    assert line["request_id"] == "req-42"
    assert line["timestamp"].endswith("Z")


def test_console_logs_are_readable_lines() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT.format(fmt="console")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stderr
    assert "sealed batch 7" in out
    assert "request_id=req-42" in out
    assert "[info" in out


def test_an_unavailable_store_is_503_with_retry_after() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from chainsense.api.errors import install_error_handlers
    from chainsense.store import StoreUnavailableError

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise StoreUnavailableError("sqlite:///x", "OperationalError: database or disk is full")

    response = TestClient(app).get("/boom")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "disk is full" in response.json()["detail"]


def test_readyz_answers_quickly(api: Api) -> None:
    body = api.client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["chain"].startswith("ok")
