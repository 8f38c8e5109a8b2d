"""``chainsense verify``: exit codes and output for one proof and for bundles (JSONL, export
zip), pinned to a deployment document, offline from trusted block hashes and against the Anvil
the proofs were anchored on, through the real command (Typer's runner, the same ``app``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainsense.cli import app
from chainsense.provenance import OFFLINE_CHECKS, ProofDocument
from tests.provenance.support import Chain
from tests.support import free_port

pytestmark = pytest.mark.chain


def _write(tmp_path: Path, doc: ProofDocument | dict[str, object], name: str = "p.json") -> str:
    raw = doc.to_json() if isinstance(doc, ProofDocument) else doc
    path = tmp_path / name
    path.write_text(json.dumps(raw, indent=2))
    return str(path)


def _pins(chain: Chain) -> list[str]:
    return [
        "--chain-id", str(chain.chain_id), "--registry", chain.registry, "--anchor", chain.anchor,
    ]  # fmt: skip


def _hashes(proofs: list[ProofDocument]) -> list[str]:
    return [f"0x{h.hex()}" for h in {p.anchor.block_hash for p in proofs}]


def _tamper_value(doc: ProofDocument) -> dict[str, object]:
    raw = doc.to_json()
    raw["reading"]["values"][0] = str(int(raw["reading"]["values"][0]) + 1)
    return raw


def test_validProof_offline_fromATrustedBlockHash_exits0(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    (tmp_path / "blocks.txt").write_text("# trusted\n" + "\n".join(_hashes(proofs)) + "\n")
    args = ["verify", _write(tmp_path, proofs[0]), *_pins(chain)]
    result = CliRunner().invoke(app, [*args, "--block-hash", str(tmp_path / "blocks.txt")])
    assert result.exit_code == 0, result.output
    for name in OFFLINE_CHECKS:
        assert f"✓ {name}" in result.stdout
    assert "VALID offline" in result.stdout


def test_validProof_onChain_exits0(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    path = _write(tmp_path, proofs[-1])
    result = CliRunner().invoke(app, ["verify", path, *_pins(chain), "--rpc", chain.rpc_url])
    assert result.exit_code == 0, result.output
    for name in (*OFFLINE_CHECKS, "code", "device"):
        assert f"✓ {name}" in result.stdout
    assert "VALID: signed by the device" in result.stdout
    assert "confirmation" in result.stdout


def test_withoutPinsOrBlockHash_exits3_andNeverSaysValid(
    proofs: list[ProofDocument], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["verify", _write(tmp_path, proofs[0])])
    assert result.exit_code == 3, result.output
    assert "VALID" not in result.stdout.replace("NOT VERIFIED", "")
    assert "· contracts" in result.stdout
    assert "not pinned" in result.stdout
    assert "NOT VERIFIED: contracts, block not checked" in result.stdout


def test_editedProof_exits1_namingTheFailedChecks(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    path = _write(tmp_path, _tamper_value(proofs[0]))
    full = CliRunner().invoke(
        app, ["verify", path, *_pins(chain), "--rpc", chain.rpc_url, "--json"]
    )
    assert full.exit_code == 1, full.output
    verdict = json.loads(full.stdout)
    assert verdict["status"] == "invalid"
    assert verdict["failed"] == ["signature", "leaf", "device"]


def test_stdin_andJsonOutput(chain: Chain, proofs: list[ProofDocument]) -> None:
    args = ["verify", "-", "--json", *_pins(chain), "--block-hash", _hashes(proofs)[0]]
    result = CliRunner().invoke(app, args, input=json.dumps(proofs[2].to_json()))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "valid"
    assert body["onchain"] is False
    assert [c["name"] for c in body["checks"]] == list(OFFLINE_CHECKS)


def test_unreachableRpc_exits1_withAFailedBlockCheck(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["verify", _write(tmp_path, proofs[0]), *_pins(chain), "--rpc", url, "--timeout", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "✗ block" in result.stdout
    assert "· device" in result.stdout
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
    del raw["anchor"]["tx_hash"]
    path = _write(tmp_path, raw, "ill.json")
    ill = runner.invoke(app, ["verify", path])
    assert ill.exit_code == 2
    assert "anchor.tx_hash" in ill.stderr
    as_json = runner.invoke(app, ["verify", path, "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["field"] == "anchor.tx_hash"
    bad_hash = runner.invoke(app, ["verify", path, "--block-hash", "0x12"])
    assert bad_hash.exit_code == 2


def test_bundle_jsonlAndZip_summaryAndProgress(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    lines = [json.dumps(p.to_json()) for p in proofs]
    bundle = tmp_path / "proofs.jsonl"
    bundle.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    offline = runner.invoke(
        app,
        [
            "verify",
            str(bundle),
            *_pins(chain),
            *[arg for h in _hashes(proofs) for arg in ("--block-hash", h)],
        ],
    )
    assert offline.exit_code == 0, offline.output
    assert f"{len(proofs)} proofs in 1 blocks: {len(proofs)} valid" in offline.stdout
    assert f"verified {len(proofs)}/{len(proofs)}" in offline.stderr
    assert "registration was not checked" in offline.stdout
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("proofs.jsonl", "\n".join([*lines, json.dumps(_tamper_value(proofs[1]))]))
    online = runner.invoke(
        app, ["verify", str(archive), *_pins(chain), "--rpc", chain.rpc_url, "--json"]
    )
    assert online.exit_code == 1, online.output
    body = json.loads(online.stdout)
    assert (body["valid"], body["invalid"], body["distinct_blocks"]) == (len(proofs), 1, 1)
    assert body["failures"][0]["line"] == len(proofs) + 1
    assert body["failures"][0]["checks"] == ["signature", "leaf"]
    unpinned = runner.invoke(app, ["verify", str(bundle), "--rpc", chain.rpc_url])
    assert unpinned.exit_code == 3, unpinned.output
    assert "NOT VERIFIED" in unpinned.stdout


def test_bundleV2_jsonlOfflineAndZipOnline(
    chain: Chain, proofs: list[ProofDocument], tmp_path: Path
) -> None:
    """chainsense.bundle.v2, as the export writes it: offline from a .jsonl file read by the
    workers, and against the chain from a zip, a tampered proof line named by its line."""
    from chainsense.provenance.bundle_v2 import bundle_lines

    lines = list(bundle_lines(proofs))
    bundle = tmp_path / "bundle.jsonl"
    bundle.write_text("".join(line + "\n" for line in lines))
    runner = CliRunner()
    hashes = [arg for h in _hashes(proofs) for arg in ("--block-hash", h)]
    offline = runner.invoke(app, ["verify", str(bundle), *_pins(chain), *hashes])
    assert offline.exit_code == 0, offline.output
    assert f"{len(proofs)} proofs in 1 blocks: {len(proofs)} valid" in offline.stdout
    tampered = list(lines)
    obj = json.loads(tampered[-1])
    obj["proof"]["reading"]["values"][0] = str(int(obj["proof"]["reading"]["values"][0]) + 1)
    tampered[-1] = json.dumps(obj)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("proofs.jsonl", "\n".join(tampered) + "\n")
    online = runner.invoke(
        app, ["verify", str(archive), *_pins(chain), "--rpc", chain.rpc_url, "--json"]
    )
    assert online.exit_code == 1, online.output
    body = json.loads(online.stdout)
    assert (body["valid"], body["invalid"]) == (len(proofs) - 1, 1)
    assert body["failures"][0]["line"] == len(tampered)
    assert sorted(body["failures"][0]["checks"]) == ["merkle-path", "signature"]
