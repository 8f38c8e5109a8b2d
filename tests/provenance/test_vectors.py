"""The shared conformance vectors (tests/vectors/proofs/, written by
``python -m tests.vectors.generate_proofs`` from a real Anvil chain): every valid proof verifies,
every tampering fails naming exactly the expected checks, every malformed document is refused
naming the field. ``test_javascript_verifier`` runs verifier-js on the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument, ProofFormatError
from chainsense.provenance.verify import verify_offline
from chainsense.provenance.verify_run import load_trusted

VECTORS = Path(__file__).parents[1] / "vectors" / "proofs"
FILES = sorted(p for p in VECTORS.glob("*.json") if p.name != "deployment.json")
PINS = Pins.from_document(json.loads((VECTORS / "deployment.json").read_text()))
TRUSTED = load_trusted((str(VECTORS / "block-hashes.txt"),))


def python_result(vector: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = ProofDocument.from_json(vector["proof"])
    except ProofFormatError as exc:
        return {"status": "malformed", "field": exc.field}
    options = vector["options"]
    verdict = verify_offline(
        doc,
        pins=PINS if options["pinned"] else None,
        trusted_blocks=TRUSTED if options["trusted_blocks"] else None,
    )
    return {
        "status": verdict.status,
        "failed": sorted(verdict.failed),
        "unchecked": sorted(verdict.unchecked),
    }


def test_theVectorsCoverWhatTheIssueAsksFor() -> None:
    names = {p.stem for p in FILES}
    assert len(names) >= 45
    for needed in ("forged-deployment", "schema-scale", "malformed-no-domain-name",
                   "header-byte", "receipt-node-byte", "unpinned", "no-trusted-block"):  # fmt: skip
        assert needed in names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_pythonVerifier_matchesTheVector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert python_result(vector) == vector["expect"]


@pytest.mark.node
def test_javascriptVerifier_agreesOnEveryVector() -> None:
    """verifier-js (viem, @openzeppelin/merkle-tree, @ethereumjs/mpt; no ChainSense code) on the
    same files: every case gives the expected result, so both verifiers agree."""
    root = Path(__file__).parents[2]
    node = shutil.which("node")
    assert node is not None, "Node.js is required (make install)"
    done = subprocess.run(
        [node, str(root / "verifier-js" / "vectors.js"), str(VECTORS)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    expected = {p.stem: json.loads(p.read_text())["expect"] for p in FILES}
    assert set(results) == set(expected)
    wrong = {
        name: (results[name], expected[name])
        for name in expected
        if results[name] != expected[name]
    }
    assert not wrong, wrong
