"""`chainsense proof get` and `chainsense export` through a running platform's API (the app's
TestClient stands in for the network through the CLI's ``open_http`` seam)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainsense.cli import _common, app
from chainsense.identity import DeviceKey
from chainsense.provenance import ProofDocument, verify_proof
from chainsense.provenance.bundle_v2 import documents
from tests.support import free_port

from .conftest import Api, make_api
from .test_proofs import _post, _wait_for_proof


def _env(api: Api) -> dict[str, str]:
    return {"CHAINSENSE_API_KEY": api.keys["reader"]}


def _through(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def client(base_url: str, timeout: float) -> Iterator[object]:
        yield api.client

    monkeypatch.setattr(_common, "open_http", client)


def test_proof_get_prints_the_document_and_export_writes_a_bundle(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _through(api, monkeypatch)
    key = DeviceKey.generate()
    api.register(key)
    ids = _post(api, key, range(1, 4))
    expected = _wait_for_proof(api, ids[1])
    runner = CliRunner()
    got = runner.invoke(app, ["proof", "get", str(ids[1])], env=_env(api))
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout) == expected
    out = tmp_path / "proof.json"
    written = runner.invoke(app, ["proof", "get", str(ids[1]), "-o", str(out)], env=_env(api))
    assert written.exit_code == 0
    assert json.loads(out.read_text()) == expected
    missing = runner.invoke(app, ["proof", "get", "99999999"], env=_env(api))
    assert missing.exit_code == 1
    assert "no reading with id 99999999" in missing.stderr

    _wait_for_proof(api, ids[-1])
    bundle = tmp_path / "bundle.zip"
    done = runner.invoke(
        app, ["export", "--device", key.address, "--out", str(bundle)], env=_env(api)
    )
    assert done.exit_code == 0, done.output
    assert "3 readings, 3 proofs" in done.stderr
    with zipfile.ZipFile(bundle) as z:
        assert sorted(z.namelist()) == [
            "deployment.json", "manifest.json", "proofs.jsonl", "readings.csv",
        ]  # fmt: skip
        manifest = json.loads(z.read("manifest.json"))
        lines = z.read("proofs.jsonl").splitlines()
        docs = list(documents(lines))  # a chainsense.bundle.v2 bundle
        csv_lines = z.read("readings.csv").decode().splitlines()
    assert (manifest["readings"], manifest["proofs"], manifest["pending"]) == (3, 3, 0)
    assert lines[0] == b'{"format":"chainsense.bundle.v2"}'
    assert all(isinstance(d, ProofDocument) for d in docs)
    assert [d.reading_id for d in docs if isinstance(d, ProofDocument)] == ids
    assert all(verify_proof(d.proof, d.root, d.leaf) for d in docs if isinstance(d, ProofDocument))
    assert len(csv_lines) == 4
    # the export's own instructions work: the whole zip verifies, pinned, against the chain
    published = tmp_path / "deployment.json"
    assert api.client.portal is not None
    published.write_text(json.dumps(api.client.get("/v1/deployment").json()))
    rpc = api.platform.chain.client.rpc_url
    verified = runner.invoke(
        app, ["verify", str(bundle), "--deployment", str(published), "--rpc", rpc]
    )
    assert verified.exit_code == 0, verified.output
    assert "3 proofs in" in verified.stdout
    assert "VALID" in verified.stdout
    # the operator's CLI publishes the same document as the API
    settings = api.platform.settings
    chain_env = {"CHAINSENSE_DATA_DIR": str(settings.data_dir), "CHAINSENSE_RPC_URL": rpc}
    cli_doc = runner.invoke(app, ["contracts", "deployment"], env=chain_env)
    assert cli_doc.exit_code == 0, cli_doc.output
    assert json.loads(cli_doc.stdout) == json.loads(published.read_text())
    bad = runner.invoke(app, ["export", "--device", "nope", "--out", str(bundle)], env=_env(api))
    assert bad.exit_code == 2


@pytest.fixture(scope="module")
def idle_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A platform whose anchorer does not run: every reading stays pending."""
    yield from make_api(tmp_path_factory.mktemp("idle"), anchoring=False)


def test_a_reading_not_anchored_yet_is_pending_in_the_api_and_the_cli(
    idle_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _through(idle_api, monkeypatch)
    key = DeviceKey.generate()
    idle_api.register(key)
    (reading_id,) = _post(idle_api, key, range(1, 2))
    response = idle_api.client.get(
        f"/v1/readings/{reading_id}/proof", headers=idle_api.auth("reader")
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["state"], body["reading_id"]) == (
        "pending",
        "unbatched",
        reading_id,
    )
    assert 0 < body["expected_wait_seconds"] < 10
    assert "waiting to be sealed" in body["detail"]
    got = CliRunner().invoke(app, ["proof", "get", str(reading_id)], env=_env(idle_api))
    assert got.exit_code == 4, got.output
    assert f"pending: reading {reading_id} is unbatched" in got.stderr
    # sealed, not anchored yet: the answer names the batch
    (batch,) = idle_api.client.portal.call(idle_api.platform.anchorer.seal_now)  # type: ignore[union-attr]
    sealed = idle_api.client.get(
        f"/v1/readings/{reading_id}/proof", headers=idle_api.auth("reader")
    ).json()
    assert (sealed["state"], sealed["batch_id"]) == ("sealed", batch.id)
    status = idle_api.client.get("/v1/anchoring", headers=idle_api.auth("reader")).json()
    assert status["running"] is False
    assert (status["sealed_batches"], status["backlog_readings"]) == (1, 1)
    assert status["lag_seconds"] >= 0
    # The anchorer is not in this process (as in a worker that does not lead): the counts and
    # the anchorer's failures come from the database, where the leader records them.
    assert status["anchorer_here"] is False
    totals = idle_api.client.portal.call(idle_api.platform.store.batches.totals)  # type: ignore[union-attr]
    assert status["batches_sealed"] == totals.sealed >= 1
    assert status["batches_anchored"] == totals.anchored
    assert (status["chain_ok"], status["last_error"]) == (True, None)
    for _ in range(2):  # the leader, in another process, fails to anchor it twice
        idle_api.client.portal.call(
            idle_api.platform.store.batches.record_failure,  # type: ignore[union-attr]
            batch.id,
            "anchoring failed: the chain is down",
        )
    status = idle_api.client.get("/v1/anchoring", headers=idle_api.auth("reader")).json()
    assert status["chain_ok"] is False
    assert status["consecutive_failures"] == 2
    assert status["last_error"] == "anchoring failed: the chain is down"


def test_without_a_platform_the_error_names_the_url_and_the_settings(tmp_path: Path) -> None:
    port = free_port()
    env = {"CHAINSENSE_DATA_DIR": str(tmp_path), "CHAINSENSE_PORT": str(port),
           "CHAINSENSE_API_KEY": "cs_000000000000_" + "x" * 43}  # fmt: skip
    got = CliRunner().invoke(app, ["proof", "get", "1"], env=env)
    assert got.exit_code == 3
    (line,) = got.stderr.splitlines()
    assert f"the platform at http://127.0.0.1:{port} is unreachable" in line
    assert "CHAINSENSE_API_URL" in line
    no_key = CliRunner().invoke(app, ["proof", "get", "1"], env={**env, "CHAINSENSE_API_KEY": ""})
    assert no_key.exit_code == 2
    assert "set CHAINSENSE_API_KEY" in no_key.stderr
