"""/docs and /redoc work offline: their pages load only same-origin assets, which are served,
and the committed copies are exactly the locked npm packages' files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainsense.api import create_app
from chainsense.config import Settings

ROOT = Path(__file__).parents[2]
VENDOR = ROOT / "src/chainsense/web/static/vendor"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    # no lifespan: the pages and the OpenAPI document need no platform
    return TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("docs"))))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_references_only_same_origin_assets_that_are_served(
    client: TestClient, page: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), html
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""(?:url|spec-url)\s*:\s*['"]([^'"]+)['"]""", html)
    refs += re.findall(r"""spec-url=['"]([^'"]+)['"]""", html)
    assert refs, html
    for ref in refs:
        assert ref.startswith("/"), ref
        assert client.get(ref).status_code == 200, ref
    assert "/openapi.json" in html


@pytest.mark.node
@pytest.mark.parametrize(
    ("vendored", "package_file"),
    [
        ("swagger-ui/swagger-ui-bundle.js", "swagger-ui-dist/swagger-ui-bundle.js"),
        ("swagger-ui/swagger-ui.css", "swagger-ui-dist/swagger-ui.css"),
        ("redoc/redoc.standalone.js", "redoc/bundles/redoc.standalone.js"),
    ],
)
def test_the_committed_copies_are_the_locked_packages_files(
    vendored: str, package_file: str
) -> None:
    assert (VENDOR / vendored).read_bytes() == (ROOT / "node_modules" / package_file).read_bytes()
    versions = json.loads((VENDOR / "versions.json").read_text())
    name = package_file.split("/")[0]
    package = json.loads((ROOT / "node_modules" / name / "package.json").read_text())
    assert versions[name] == package["version"]
