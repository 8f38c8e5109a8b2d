"""Fuzz the API from its own OpenAPI document: no request may get a 5xx.

Schemathesis generates requests for every operation in ``app.openapi()`` (explicit examples,
coverage of the schema's edges, then random valid and invalid data) and sends them, in process,
through the TestClient of a running platform (real Anvil, SQLite): the app's lifespan is the one
``make_api`` started, so the handlers run against a real store and chain.

Two runs: with an admin key (so scope checks never hide a handler) over every operation, and with
no key over the operations that need one. Every response must not be a 5xx, and must match the
document: status code, content type, body schema.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import urllib3
from requests.adapters import HTTPAdapter
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.testclient import TestClient
from urllib3 import HTTPHeaderDict

from chainsense.api import create_app
from chainsense.api.errors import PROBLEM_JSON
from chainsense.config import Settings
from tests.api.conftest import Api, make_api

pytestmark = [pytest.mark.chain, pytest.mark.slow]

#: Checks every response goes through. ``ignored_auth`` is left out: it re-sends requests on a
#: session of its own (a real network one), which would bypass the TestClient.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "unsupported_method",
    "missing_required_header",
)

#: Operations that send a chain transaction when the input is valid get fewer random examples.
CHAIN_WRITES = [
    {"include-method": "POST", "include-path": "/v1/devices", "generation": {"max-examples": 15}},
    {
        "include-method": "POST",
        "include-path": "/v1/devices/{address}/revoke",
        "generation": {"max-examples": 15},
    },
]

#: POST /v1/readings checks what a JSON schema cannot say (the signature recovers a registered
#: device, the values fit the reading's schema, seq increases), so a schema-valid body is mostly
#: refused; and a batch answers 200 with a result per reading, rejected ones included (one bad
#: reading never drops the good ones), so invalid data does not always get a 4xx either.
READINGS_VALIDATE_MORE = {
    "include-method": "POST",
    "include-path": "/v1/readings",
    "checks": {
        "positive_data_acceptance": {"enabled": False},
        "negative_data_rejection": {"enabled": False},
    },
}

#: How an error response should be documented.
PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _config(max_examples: int, operations: list[dict[str, Any]]) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 9457,
            "base-url": "http://testserver",
            # Timing-dependent, so it would make the run depend on the machine's speed.
            "suppress-health-check": ["too_slow"],
            "generation": {
                "deterministic": True,
                "max-examples": max_examples,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "operations": operations,
        }
    )


def _document() -> dict[str, Any]:
    """The app's OpenAPI document. Building the app starts nothing (its lifespan does), so this is
    safe at collection time, where ``parametrize`` needs it. (Schemathesis' lazy loader,
    ``schemathesis.pytest.from_fixture``, would avoid that, but it fails on pytest 9.2: it sets
    ``request.node._nodeid``.)"""
    document: dict[str, Any] = create_app(Settings(data_dir=Path("unused"))).openapi()
    return document


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            yield method.upper(), path, operation


def _documentation_gaps(document: dict[str, Any]) -> list[str]:
    """Every error the app can send, as the document should say it: problem+json with the Problem
    schema; 401 and 403 wherever a key is needed; 400 wherever a JSON body is parsed. (The probes
    outside /v1 answer in their own shape, for load balancers.)"""
    gaps = []
    for method, path, operation in _operations(document):
        if not path.startswith("/v1/"):
            continue
        responses = operation["responses"]
        needed = {s for s in responses if int(s) >= 400}
        if operation.get("security"):
            needed |= {"401", "403"}
        if "requestBody" in operation:
            needed.add("400")
        for status in sorted(needed):
            content = responses.get(status, {}).get("content")
            if content != PROBLEM:
                gaps.append(f"{method} {path}: {status} is documented with content {content}")
    return gaps


def _load(max_examples: int, operations: list[dict[str, Any]]) -> OpenApiSchema:
    document = _document()
    return schemathesis.openapi.from_dict(document, config=_config(max_examples, operations))


#: GET /v1/stream is an endless Server-Sent Events response: tests/ai/test_e2e.py tests it
#: against a real server.
as_admin = _load(60, [*CHAIN_WRITES, READINGS_VALIDATE_MORE]).exclude(path="/v1/stream")
without_key = _load(25, []).include(lambda ctx: bool(ctx.operation.definition.raw.get("security")))


class _TestClientAdapter(HTTPAdapter):
    """Sends what ``requests`` prepared through a Starlette TestClient, so every request reaches
    the app in process, on the TestClient's event loop, where the platform was opened."""

    def __init__(self, client: TestClient) -> None:
        super().__init__()
        self.client = client

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **_: Any
    ) -> requests.Response:
        body = request.body
        content = body.encode() if isinstance(body, str) else body
        assert content is None or isinstance(content, bytes), "schemathesis sends whole bodies"
        headers = [(k.encode("latin-1"), _latin1(v)) for k, v in request.headers.items()]
        answer = self.client.request(
            request.method or "GET",
            request.url or "/",
            headers=headers,
            content=content,
            follow_redirects=False,
        )
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=HTTPHeaderDict(answer.headers.multi_items()),
            status=answer.status_code,
            reason=answer.reason_phrase,
            version=11,
            preload_content=False,
        )
        response = self.build_response(request, raw)
        response.elapsed = answer.elapsed
        return response


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def session(fuzz_api: Api) -> Iterator[requests.Session]:
    with requests.Session() as http:
        adapter = _TestClientAdapter(fuzz_api.client)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
        yield http


def _asks_for_a_key(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """With no valid key, an operation that needs one answers 401 and says how to authenticate,
    before it looks at the rest of the request. Two things come before it: routing refuses an
    undeclared method (405), and the body gate (api/body.py) checks a body before any route
    runs, so a body that is not strict JSON gets its 400, 413 or 415 first."""
    if response.request.method != case.operation.method.upper():
        return
    if response.status_code in (400, 413, 415) and "requestBody" in case.operation.definition.raw:
        return
    assert response.status_code == 401, f"{response.status_code} without a valid key"
    assert response.headers.get("www-authenticate") == ["Bearer"]


def test_the_app_documents_its_errors() -> None:
    assert _documentation_gaps(_document()) == []


@pytest.mark.parametrize(
    "value", ["1e999999", "-1e999999999", '"1e999999"', "1e500000", '"4.150000000000000000000001"']
)
def test_a_senml_value_past_decimals_range_is_refused(fuzz_api: Api, value: str) -> None:
    """Found by hand next to the fuzzer, which draws small numbers for ``SenMLRecord.v``: a value
    whose exponent leaves the decimal context's range once scaled."""
    reading = {
        "device": "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "seq": 1,
        "timestamp": 0,
        "schema": "chainsense.coldchain.v1",
        "senml": [{"n": "temperature", "v": "VALUE"}, {"n": "humidity", "v": 62}],
        "signature": "0x" + "11" * 65,
    }
    # Spliced in as raw JSON text: 1e999999 has no Python float to json.dumps it from.
    body = json.dumps(reading).replace('"VALUE"', value)
    response = fuzz_api.client.post(
        "/v1/readings", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "senml[0].v"


@as_admin.parametrize()
def test_as_admin(case: schemathesis.Case[Any], session: requests.Session, fuzz_api: Api) -> None:
    case.call_and_validate(session=session, headers=fuzz_api.auth("admin"))


@without_key.parametrize()
def test_without_key(case: schemathesis.Case[Any], session: requests.Session) -> None:
    case.call_and_validate(session=session, additional_checks=[_asks_for_a_key])
