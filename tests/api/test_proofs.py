"""Proofs through the API: pending, then a document that verifies; batches, backlog, export."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from chainsense.identity import DeviceKey, Reading, ReadingVerifier, struct_hash
from chainsense.provenance import ProofDocument, leaf_of, verify_proof
from chainsense.provenance.bundle_v2 import documents

from .conftest import Api


def _wait_for_proof(api: Api, reading_id: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.client.get(f"/v1/readings/{reading_id}/proof", headers=api.auth("reader"))
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 202, response.text
        assert time.monotonic() < deadline, f"still pending: {response.json()}"
        time.sleep(0.1)


def _post(api: Api, key: DeviceKey, seqs: range) -> list[int]:
    readings = [api.sign(key, s, (400 + s, 600)) for s in seqs]
    response = api.client.post("/v1/readings", json={"readings": readings})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def test_proof_is_pending_then_a_document_that_verifies(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    ids = _post(api, key, range(1, 6))
    first = api.client.get(f"/v1/readings/{ids[0]}/proof", headers=api.auth("reader"))
    if first.status_code == 202:  # the anchorer may already have been quick
        pending = first.json()
        assert pending["status"] == "pending"
        assert pending["state"] in ("unbatched", "sealed")
        assert pending["expected_wait_seconds"] >= 0
        assert int(first.headers["Retry-After"]) >= 1
    body = _wait_for_proof(api, ids[2])
    doc = ProofDocument.from_json(body)
    deployment = api.platform.chain.deployment
    assert body["format"] == "chainsense.proof.v2"
    assert body["reading_id"] == str(ids[2])
    assert body["schema"]["name"] == "chainsense.coldchain.v1"
    assert doc.reading.seq == 3
    assert doc.reading.values == (403, 600)
    assert doc.domain.verifying_contract == deployment.address("DeviceRegistry")
    assert doc.anchor.contract == deployment.address("ReadingAnchor")
    assert doc.anchor.chain_id == deployment.chain_id
    # offline: signature, leaf, path
    verifier = ReadingVerifier(doc.domain.chain_id, doc.domain.verifying_contract)
    assert verifier.recover(doc.reading, doc.signature) == key.address
    assert doc.struct_hash == struct_hash(doc.reading)
    assert doc.leaf == leaf_of(doc.struct_hash)
    assert verify_proof(doc.proof, doc.root, doc.leaf)
    # on-chain: the root is anchored at the recorded block
    chain = api.platform.chain
    anchor = chain.client.contract("ReadingAnchor", doc.anchor.contract)
    on_chain = api.client.portal.call(chain.client.call, anchor.functions.anchorOf(doc.root))  # type: ignore[union-attr]
    assert (on_chain[1], on_chain[2]) == (doc.anchor.block_number, doc.anchor.block_time)
    assert api.client.portal.call(  # type: ignore[union-attr]
        chain.client.call, anchor.functions.verify(list(doc.proof), doc.root, doc.leaf)
    )


def test_proof_of_an_unknown_reading_is_404(api: Api) -> None:
    response = api.client.get("/v1/readings/999999/proof", headers=api.auth("reader"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert api.client.get("/v1/readings/1/proof").status_code == 401


def test_batches_and_anchoring_status(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    ids = _post(api, key, range(1, 4))
    _wait_for_proof(api, ids[-1])
    status = api.client.get("/v1/anchoring", headers=api.auth("reader")).json()
    assert status["running"] is True
    assert status["chain_ok"] is True
    assert status["backlog_readings"] >= 0
    assert status["batches_anchored"] >= 1
    page = api.client.get(
        "/v1/batches", params={"state": "anchored"}, headers=api.auth("reader")
    ).json()
    assert page["items"]
    assert all(b["state"] == "anchored" for b in page["items"])
    batch = page["items"][-1]
    one = api.client.get(f"/v1/batches/{batch['id']}", headers=api.auth("reader"))
    assert one.json() == batch
    assert api.client.get("/v1/batches/999999", headers=api.auth("reader")).status_code == 404


def test_export_readings_as_csv_and_jsonl_and_the_proof_bundle(api: Api) -> None:
    key = DeviceKey.generate()
    api.register(key)
    ids = _post(api, key, range(1, 8))
    _wait_for_proof(api, ids[-1])
    params = {"device": key.address}
    as_csv = api.client.get("/v1/export/readings", params=params, headers=api.auth("reader"))
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["id"]) for r in rows] == ids
    assert rows[0]["values"] == "401 600"
    as_jsonl = api.client.get(
        "/v1/export/readings", params=params | {"format": "jsonl"}, headers=api.auth("reader")
    )
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 8))
    assert Reading.from_json(lines[0]).values == (401, 600)
    # a time range keeps the readings whose device time is inside it
    since = lines[2]["timestamp"]
    ranged = api.client.get(
        "/v1/export/readings",
        params=params | {"format": "jsonl", "since": since},
        headers=api.auth("reader"),
    )
    assert all(json.loads(x)["timestamp"] >= since for x in ranged.text.splitlines())
    single = api.client.get(
        "/v1/export/proofs", params=params | {"format": "proofs"}, headers=api.auth("reader")
    )
    docs = [ProofDocument.from_json(json.loads(line)) for line in single.text.splitlines()]
    assert [d.reading_id for d in docs] == ids
    assert all(verify_proof(d.proof, d.root, d.leaf) for d in docs)
    # the default: a chainsense.bundle.v2 bundle holding the same documents
    bundle = api.client.get("/v1/export/proofs", params=params, headers=api.auth("reader"))
    lines = bundle.text.splitlines()
    assert lines[0] == '{"format":"chainsense.bundle.v2"}'
    assert sum(line.startswith('{"batch":') for line in lines) >= 1
    back = [d.to_json() if isinstance(d, ProofDocument) else d for d in documents(lines)]
    assert back == [d.to_json() for d in docs]
    empty = api.client.get(
        "/v1/export/readings", params={"device": "0x" + "11" * 20}, headers=api.auth("reader")
    )
    assert empty.text.startswith("id,device,seq")
