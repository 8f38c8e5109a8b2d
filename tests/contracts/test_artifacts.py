"""The committed artifacts are exactly what a fresh solc-js compile of contracts/ produces."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from chainsense.contracts import artifact_names, load_artifact

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.node


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is required to build contracts (make test installs node_modules)"
    return subprocess.run(
        [node, "contracts/build.mjs", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_committed_artifacts_match_a_fresh_compile() -> None:
    result = _build("--check")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_artifact(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    shutil.copytree(ROOT / "src/chainsense/contracts/artifacts", out)
    target = out / "ReadingAnchor.json"
    data = json.loads(target.read_text())
    data["bytecode"] = data["bytecode"][:-2] + "00"
    target.write_text(json.dumps(data, indent=2) + "\n")
    result = _build("--check", "--out", str(out))
    assert result.returncode == 1
    assert "ReadingAnchor.json" in result.stderr


def test_artifacts_record_compiler_and_source_hashes() -> None:
    for name in artifact_names():
        artifact = load_artifact(name)
        assert artifact.compiler["version"].startswith("0.8.30+")
        assert artifact.compiler["settings"]["evmVersion"] == "cancun"
        assert artifact.compiler["settings"]["optimizer"] == {"enabled": True, "runs": 200}
        assert artifact.sources
        assert all(h.startswith("0x") for h in artifact.sources.values())
