"""The API on the embedded defaults: starts its own dev chain, deploys on first start, finds the
same deployment after a restart, and answers probes and errors in problem+json."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainsense.api import create_app
from chainsense.config import Settings
from tests.support import free_port

pytestmark = pytest.mark.chain


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, anvil_port=free_port())


def test_first_start_deploys_and_restart_finds_the_same_contracts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        first = client.get("/v1/chain").json()
        assert first["dev_chain"] is True
        assert first["chain_id"] == 31337
        assert set(first["contracts"]) == {
            "DeviceRegistry",
            "ReadingAnchor",
            "TestStablecoin",
            "ColdChainEscrow",
            "EnergyMarket",
            "ChargingPayments",
        }
    assert (tmp_path / "chain" / "state.json").exists()
    assert (tmp_path / "deployments" / "31337.json").exists()

    with TestClient(create_app(_settings(tmp_path))) as client:
        second = client.get("/v1/chain").json()
    assert second["contracts"] == first["contracts"]
    assert second["block_number"] >= first["block_number"]


def test_unknown_route_is_problem_json(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:
        response = client.get("/v1/nothing-here")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404
        assert client.get("/").status_code == 200
        assert "ChainSense" in client.get("/").text
        openapi = client.get("/openapi.json").json()
        assert "/v1/chain" in openapi["paths"]
