"""``chainsense verify``: exit codes and output, offline and against the Anvil the proofs were
anchored on, through the real command (Typer's runner, the same ``app`` as the console script)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainsense.cli import app
from chainsense.provenance import OFFLINE_CHECKS, ONCHAIN_CHECKS, ProofDocument
from tests.provenance.support import Chain
from tests.support import free_port

pytestmark = pytest.mark.chain


def _write(tmp_path: Path, doc: ProofDocument | dict[str, object], name: str = "p.json") -> str:
    raw = doc.to_json() if isinstance(doc, ProofDocument) else doc
    path = tmp_path / name
    path.write_text(json.dumps(raw, indent=2))
    return str(path)


def _tamper_value(doc: ProofDocument) -> dict[str, object]:
    raw = doc.to_json()
    raw["reading"]["values"][0] += 1
    return raw


def test_validProof_offline_exits0_listingEachCheck(
    proofs: list[ProofDocument], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["verify", _write(tmp_path, proofs[0])])
    assert result.exit_code == 0, result.output
    for name in OFFLINE_CHECKS:
        assert f"✓ {name}" in result.stdout
    assert "VALID offline" in result.stdout
    assert "--rpc" in result.stdout


def test_validProof_onChain_exits0(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    path = _write(tmp_path, proofs[-1])
    result = CliRunner().invoke(app, ["verify", path, "--rpc", chain.rpc_url])
    assert result.exit_code == 0, result.output
    for name in (*OFFLINE_CHECKS, *ONCHAIN_CHECKS):
        assert f"✓ {name}" in result.stdout
    assert "VALID: signed by the device, anchored on-chain" in result.stdout


def test_editedProof_exits1_namingTheFailedChecks(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    path = _write(tmp_path, _tamper_value(proofs[0]))
    offline = CliRunner().invoke(app, ["verify", path])
    assert offline.exit_code == 1, offline.output
    assert "✗ signature" in offline.stdout
    assert "✗ leaf" in offline.stdout
    assert "INVALID: failed signature, leaf" in offline.stdout
    full = CliRunner().invoke(app, ["verify", path, "--rpc", chain.rpc_url, "--json"])
    assert full.exit_code == 1, full.output
    verdict = json.loads(full.stdout)
    assert verdict["ok"] is False
    assert verdict["failed"] == ["signature", "leaf", "device"]


def test_stdin_andJsonOutput(proofs: list[ProofDocument]) -> None:
    result = CliRunner().invoke(
        app, ["verify", "-", "--json"], input=json.dumps(proofs[2].to_json())
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["ok"] is True
    assert body["onchain"] is False
    assert [c["name"] for c in body["checks"]] == list(OFFLINE_CHECKS)


def test_unreachableRpc_exits1_withAFailedChainCheck(
    proofs: list[ProofDocument], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["verify", _write(tmp_path, proofs[0]), "--rpc", url, "--timeout", "2"]
    )
    assert result.exit_code == 1, result.output
    assert "✗ chain" in result.stdout
    assert "· anchor" in result.stdout
    assert "Traceback" not in result.output


def test_unreadableOrIllFormed_exits2(proofs: list[ProofDocument], tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["verify", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    (tmp_path / "bad.json").write_text("{not json")
    not_json = runner.invoke(app, ["verify", str(tmp_path / "bad.json")])
    assert not_json.exit_code == 2
    assert "not JSON" in not_json.stderr
    raw = proofs[0].to_json()
    del raw["anchor"]["txHash"]
    path = _write(tmp_path, raw, "ill.json")
    ill = runner.invoke(app, ["verify", path])
    assert ill.exit_code == 2
    assert "anchor.txHash" in ill.stderr
    as_json = runner.invoke(app, ["verify", path, "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["field"] == "anchor.txHash"
