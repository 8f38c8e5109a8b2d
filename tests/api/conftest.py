"""A running platform (real Anvil, real database) behind a TestClient, with API keys of each
scope and helpers to make signed readings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chainsense.api import create_app
from chainsense.config import Settings
from chainsense.identity import DeviceKey, Reading
from chainsense.platform import Platform, anchor_policy
from chainsense.provenance.anchorer import Anchorer
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import free_port, temp_postgres_database

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")


@dataclass
class Api:
    client: TestClient
    platform: Platform
    keys: dict[str, str]

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def count(self) -> int:
        return int(self.client.portal.call(self.platform.store.readings.count))  # type: ignore[union-attr]

    def register(self, key: DeviceKey) -> dict[str, Any]:
        response = self.client.post(
            "/v1/devices", json={"address": key.address}, headers=self.auth("operator")
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def sign(
        self,
        key: DeviceKey,
        seq: int,
        values: tuple[int, ...] = (415, 620),
        *,
        timestamp: int | None = None,
        schema: bytes = COLD.id,
        chain_id: int | None = None,
        contract: str | None = None,
    ) -> dict[str, Any]:
        reading = Reading(
            device=key.address,
            seq=seq,
            timestamp=timestamp if timestamp is not None else int(time.time() * 1000),
            schema=schema,
            values=values,
        )
        signature = key.sign(
            reading,
            chain_id or self.platform.chain.deployment.chain_id,
            contract or self.platform.chain.deployment.address("DeviceRegistry"),
        )
        return reading.to_json() | {"signature": "0x" + signature.hex()}


def own_anchorer(platform: Platform) -> Anchorer:
    """An anchorer of the test's own on the platform's store, chain and contract: the
    platform's does not run in these tests, and on PostgreSQL it would be fenced as no leader."""
    return Anchorer(
        store=platform.store,
        client=platform.chain.client,
        signer=platform.chain.anchorer,
        contract=platform.chain.deployment.address("ReadingAnchor"),
        policy=anchor_policy(platform.settings),
    )


def _create_key(client: TestClient, platform: Platform, scope: str) -> str:
    async def create() -> str:
        _, key = await platform.store.api_keys.create(name=f"test-{scope}", scope=scope)
        return key

    assert client.portal is not None
    return client.portal.call(create)


def cli_through(
    api: Api, monkeypatch: pytest.MonkeyPatch, scope: str = "operator"
) -> dict[str, str]:
    """The environment of a CLI run that reaches this platform through its API only: the app's
    TestClient stands in for the network (the CLI's ``open_http`` seam), the data dir names a
    directory that does not exist, and opening any database fails the test."""
    from chainsense.cli import _common
    from chainsense.store import Store

    @contextmanager
    def client(base_url: str, timeout: float) -> Iterator[TestClient]:
        assert base_url == CLI_API_URL
        yield api.client

    async def no_database(*args: object, **kwargs: object) -> Store:
        raise AssertionError("the CLI opened a database")

    monkeypatch.setattr(_common, "open_http", client)
    monkeypatch.setattr(Store, "open", no_database)
    nowhere = api.platform.settings.data_dir.parent / "cli-has-no-data-dir"
    assert not nowhere.exists()
    return {
        "CHAINSENSE_DATA_DIR": str(nowhere),
        "CHAINSENSE_API_URL": CLI_API_URL,
        "CHAINSENSE_API_KEY": api.keys[scope],
        "CHAINSENSE_ANVIL_PORT": str(api.platform.settings.anvil_port),
    }


#: Where a CLI run under :func:`cli_through` believes the platform is.
CLI_API_URL = "http://platform.invalid:8123"


def make_api(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Iterator[Api]:
    # Rate limits have their own tests (tests/api/test_limits.py, tests/e2e/test_limits.py);
    # here one shared app takes each module's bursts, which they would turn into 429s.
    overrides.setdefault("rate_limit_enabled", False)
    overrides.setdefault("registry_poll_interval", 0.25)
    settings = Settings(
        data_dir=data_dir, anvil_port=free_port(), database_url=database_url, **overrides
    )
    with TestClient(create_app(settings)) as client:
        platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
        keys = {s: _create_key(client, platform, s) for s in ("admin", "operator", "reader")}
        yield Api(client, platform, keys)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The platform on each database backend: the same suite runs against both."""
    data_dir = tmp_path_factory.mktemp("api")
    if request.param == "sqlite":
        yield from make_api(data_dir)
    else:
        with temp_postgres_database() as url:
            yield from make_api(data_dir, url)
