"""`chainsense apikey`: through /v1/api-keys with an admin key, and straight into the local
database without one (how the first admin key is made)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainsense.cli import _common, app

from .conftest import Api


@pytest.fixture
def through_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    @contextmanager
    def client(base_url: str, timeout: float) -> Iterator[object]:
        yield api.client

    monkeypatch.setattr(_common, "open_http", client)
    return api


def test_keys_are_created_listed_and_revoked_through_the_api(through_api: Api) -> None:
    api = through_api
    runner = CliRunner()
    admin = {"CHAINSENSE_API_KEY": api.keys["admin"]}
    made = runner.invoke(app, ["apikey", "create", "--name", "ci", "--scope", "reader"], env=admin)
    assert made.exit_code == 0, made.output
    assert "through http://" in made.stderr
    key = made.stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/v1/devices", headers=auth).is_success

    listed = json.loads(runner.invoke(app, ["apikey", "list", "--json"], env=admin).stdout)
    mine = next(k for k in listed if k["name"] == "ci")
    assert (mine["scope"], mine["revoked_at"]) == ("reader", None)
    assert "key" not in mine

    revoked = runner.invoke(app, ["apikey", "revoke", str(mine["id"])], env=admin)
    assert revoked.exit_code == 0, revoked.output
    assert (
        api.client.get("/v1/devices", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    )

    own_id = next(k["id"] for k in listed if k["name"] == "test-admin")
    itself = runner.invoke(app, ["apikey", "revoke", str(own_id)], env=admin)
    assert itself.exit_code == 1
    assert "cannot revoke itself" in itself.stderr

    reader = {"CHAINSENSE_API_KEY": api.keys["reader"]}
    refused = runner.invoke(app, ["apikey", "list"], env=reader)
    assert refused.exit_code == 2
    assert "admin scope" in refused.stderr


def test_without_a_key_the_first_key_goes_into_the_local_database(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CHAINSENSE_DATA_DIR": str(tmp_path), "CHAINSENSE_API_KEY": ""}
    made = runner.invoke(app, ["apikey", "create", "--name", "root", "--scope", "admin"], env=env)
    assert made.exit_code == 0, made.output
    assert "in the local database" in made.stderr
    assert made.stdout.strip().startswith("cs_")
    listed = json.loads(runner.invoke(app, ["apikey", "list", "--json"], env=env).stdout)
    assert [(k["name"], k["scope"]) for k in listed] == [("root", "admin")]
    bad = runner.invoke(app, ["apikey", "create", "--name", "x", "--scope", "root"], env=env)
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: --scope must be admin, operator or reader"
