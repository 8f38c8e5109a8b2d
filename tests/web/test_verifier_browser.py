"""verifier-js in real Chromium: the module bundled by esbuild from node_modules (no CDN, no
request at all: the page is built in place), run on every conformance vector, gives exactly
the results Node gives and the vectors expect."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.web.conftest import ROOT, new_context

pytestmark = [pytest.mark.node]

VECTORS = ROOT / "tests" / "vectors" / "proofs"
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"


def _bundle(out: Path) -> str:
    assert ESBUILD.exists(), "esbuild is missing: make install"
    subprocess.run(
        [str(ESBUILD), str(ROOT / "verifier-js" / "conformance.js"), "--bundle",
         "--format=iife", "--global-name=ChainSenseConformance", "--platform=browser",
         "--target=es2020", "--log-level=warning", f"--outfile={out}"],
        check=True, timeout=120,
    )  # fmt: skip
    return out.read_text(encoding="utf-8")


def _node_results() -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "Node.js is required (make install)"
    done = subprocess.run(
        [node, str(ROOT / "verifier-js" / "vectors.js"), str(VECTORS)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def test_verifierJs_inChromium_agreesWithNodeOnEveryVector(
    browser: Browser, tmp_path: Path
) -> None:
    script = _bundle(tmp_path / "conformance.js")
    vectors = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(VECTORS.glob("*.json"))
        if p.name != "deployment.json"
    }
    deployment = json.loads((VECTORS / "deployment.json").read_text(encoding="utf-8"))
    hashes = (VECTORS / "block-hashes.txt").read_text(encoding="utf-8")

    context, watch = new_context(browser)
    try:
        page = context.new_page()
        page.set_content("<!doctype html><title>verifier-js</title>")
        page.add_script_tag(content=script)
        agent = page.evaluate("navigator.userAgent")
        assert "Chrome" in agent
        assert page.evaluate("typeof process === 'undefined'")  # a browser, not Node
        in_browser: dict[str, Any] = page.evaluate(
            "([v, d, h]) => ChainSenseConformance.vectorResults(v, d, h)",
            [vectors, deployment, hashes],
        )
    finally:
        context.close()
    watch.check()

    expected = {name: v["expect"] for name, v in vectors.items()}
    assert in_browser == _node_results()
    assert in_browser == expected
    statuses = {r["status"] for r in in_browser.values()}
    assert statuses == {"valid", "invalid", "incomplete", "malformed"}
