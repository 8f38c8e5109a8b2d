"""POST /v1/verify on a running platform: real proofs of readings signed by a device registered
through the API and anchored in the platform's own ReadingAnchor; public (no API key)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from chainsense.api.errors import PROBLEM_JSON
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.identity import DeviceKey
from chainsense.provenance import OFFLINE_CHECKS, ONCHAIN_CHECKS, ProofDocument
from tests.api.conftest import Api, make_api
from tests.provenance.support import Chain

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def verify_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("verify"))


@pytest.fixture(scope="module")
def docs(verify_api: Api) -> list[dict[str, Any]]:
    api = verify_api
    ctx = api.platform.chain
    key = DeviceKey(bytes.fromhex(ANVIL_DEV_KEYS[7][2:]))
    api.register(key)
    chain = Chain(
        rpc_url=ctx.client.rpc_url,
        client=ctx.client,
        operator=ctx.operator,
        anchorer=ctx.anchorer,
        registry=ctx.deployment.address("DeviceRegistry"),
        anchor=ctx.deployment.address("ReadingAnchor"),
        chain_id=ctx.deployment.chain_id,
    )
    items = [chain.sign(key, seq) for seq in (1, 2, 3)]
    assert api.client.portal is not None
    proofs: list[ProofDocument] = api.client.portal.call(chain.anchor_batch, items)
    return [p.to_json() for p in proofs]


def test_validProof_offline_isPinnedToThePlatform_butTheBlockIsUnchecked(
    verify_api: Api, docs: list[dict[str, Any]]
) -> None:
    response = verify_api.client.post("/v1/verify", json=docs[0])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "incomplete"
    assert body["ok"] is False
    assert body["onchain"] is False
    assert body["failed"] == []
    assert body["unchecked"] == ["block"]
    assert [c["name"] for c in body["checks"]] == list(OFFLINE_CHECKS)
    assert "this platform's deployment" in body["checks"][0]["detail"]


def test_validProof_onChain(verify_api: Api, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        response = verify_api.client.post("/v1/verify", params={"onchain": "true"}, json=doc)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "valid", body
        assert [c["name"] for c in body["checks"]] == [*OFFLINE_CHECKS, *ONCHAIN_CHECKS]


def test_deployment_isPublished_andAForeignAnchorFailsContracts(
    verify_api: Api, docs: list[dict[str, Any]]
) -> None:
    published = verify_api.client.get("/v1/deployment")
    assert published.status_code == 200, published.text
    document = published.json()
    assert document["format"] == "chainsense.deployment.v1"
    registry = document["contracts"]["DeviceRegistry"]
    assert registry["address"] == docs[0]["domain"]["verifying_contract"]
    assert len(registry["code_hash"]) == 66
    doc = copy.deepcopy(docs[0])
    doc["anchor"]["contract"] = "0x" + "11" * 20
    body = verify_api.client.post("/v1/verify", json=doc).json()
    assert set(body["failed"]) == {"contracts", "receipt"}


def _bump(value: str) -> str:
    return str(int(value) + 1)


@pytest.mark.parametrize(
    ("path", "failed"),
    [
        (("reading", "values", 0), ["signature", "leaf", "device"]),
        (("anchor", "block_time_s"), ["header"]),
        (("anchor", "block_number"), ["header", "block"]),
    ],
)
def test_editedProof_is200_withTheFailedChecksNamed(
    verify_api: Api, docs: list[dict[str, Any]], path: tuple[Any, ...], failed: list[str]
) -> None:
    doc = copy.deepcopy(docs[1])
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = _bump(node[path[-1]])
    response = verify_api.client.post("/v1/verify?onchain=true", json=doc)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "invalid"
    assert body["failed"] == failed
    offline = verify_api.client.post("/v1/verify", json=doc).json()
    assert offline["failed"] == [f for f in failed if f in OFFLINE_CHECKS and f != "block"]


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    return body


def test_illFormedDocument_is422NamingTheField(verify_api: Api, docs: list[dict[str, Any]]) -> None:
    client = verify_api.client
    # what the JSON schema already says
    missing = {**docs[0], "anchor": {k: v for k, v in docs[0]["anchor"].items() if k != "tx_hash"}}
    body = _problem(client.post("/v1/verify", json=missing), 422)
    assert [e["field"] for e in body["errors"]] == ["anchor.tx_hash"]
    unknown = {**docs[0], "note": "x"}
    body = _problem(client.post("/v1/verify", json=unknown), 422)
    assert [e["field"] for e in body["errors"]] == ["note"]
    seq = {**docs[0], "reading": {**docs[0]["reading"], "seq": 7}}
    body = _problem(client.post("/v1/verify", json=seq), 422)
    assert [e["field"] for e in body["errors"]] == ["reading.seq"]
    # what only the strict parser knows: int64 range
    big = {**docs[0], "reading": {**docs[0]["reading"], "values": [str(2**63), "1"]}}
    body = _problem(client.post("/v1/verify", json=big), 422)
    assert body["field"] == "reading.values[0]"
    assert body["title"] == "Invalid proof document"


def test_notJson_is400_andNotAnObject_is422(verify_api: Api) -> None:
    client = verify_api.client
    headers = {"Content-Type": "application/json"}
    _problem(client.post("/v1/verify", content=b"{nope", headers=headers), 400)
    _problem(client.post("/v1/verify", json=[1, 2]), 422)


def test_openApi_documentsTheVerdict(verify_api: Api) -> None:
    document = verify_api.client.get("/openapi.json").json()
    operation = document["paths"]["/v1/verify"]["post"]
    assert "security" not in operation
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/VerdictPublic"}
    assert "ProofPublic" in document["components"]["schemas"]
