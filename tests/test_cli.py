"""The CLI against real Anvil nodes: deploy to an external RPC with a key from the environment,
verify the bytecode (match, and mismatch for a tampered artifact), and chain status."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web3 import Web3

from chainsense.chain import find_anvil
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.cli import app
from tests.support import free_port

pytestmark = pytest.mark.chain

ROOT = Path(__file__).parents[1]


@pytest.fixture
def external_chain() -> Iterator[str]:
    """A plain Anvil process standing in for an external EVM endpoint."""
    port = free_port()
    proc = subprocess.Popen([str(find_anvil()), "--port", str(port), "--silent"])
    url = f"http://127.0.0.1:{port}"
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        deadline = time.monotonic() + 20
        while not w3.is_connected():
            assert time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _env(data_dir: Path) -> dict[str, str]:
    return {
        "CHAINSENSE_DATA_DIR": str(data_dir),
        "CHAINSENSE_DEPLOYER_KEY": ANVIL_DEV_KEYS[0],
        "CHAINSENSE_OPERATOR_KEY": ANVIL_DEV_KEYS[1],
        "CHAINSENSE_ANCHORER_KEY": ANVIL_DEV_KEYS[2],
    }


def test_deploy_verify_status_on_an_external_rpc(external_chain: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = _env(tmp_path / "data")

    deployed = runner.invoke(app, ["contracts", "deploy", "--rpc", external_chain], env=env)
    assert deployed.exit_code == 0, deployed.output
    for name in ("DeviceRegistry", "TestStablecoin", "ColdChainEscrow", "EnergyMarket"):
        assert name in deployed.output
    assert "ChargingPayments" in deployed.output
    assert "recorded in" in deployed.output

    again = runner.invoke(app, ["contracts", "deploy", "--rpc", external_chain], env=env)
    assert again.exit_code == 2
    assert "already recorded" in again.output

    status = runner.invoke(app, ["chain", "status", "--rpc", external_chain], env=env)
    assert status.exit_code == 0, status.output
    assert "chain id:    31337" in status.output

    verified = runner.invoke(
        app, ["contracts", "verify", "--rpc", external_chain, "--json"], env=env
    )
    assert verified.exit_code == 0, verified.output
    assert [r["match"] for r in json.loads(verified.output)] == [True] * 6

    tampered = tmp_path / "tampered"
    shutil.copytree(ROOT / "src/chainsense/contracts/artifacts", tampered)
    artifact = json.loads((tampered / "DeviceRegistry.json").read_text())
    code = artifact["deployedBytecode"]
    artifact["deployedBytecode"] = (
        code[:100] + ("00" if code[100:102] != "00" else "01") + code[102:]
    )
    (tampered / "DeviceRegistry.json").write_text(json.dumps(artifact))
    mismatch = runner.invoke(
        app, ["contracts", "verify", "--rpc", external_chain, "--artifacts", str(tampered)], env=env
    )
    assert mismatch.exit_code == 1
    assert "MISMATCH DeviceRegistry" in mismatch.output
    assert "match    ReadingAnchor" in mismatch.output


def test_external_rpc_without_keys_is_a_clear_config_error(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["contracts", "deploy", "--rpc", "http://127.0.0.1:1"],
        env={"CHAINSENSE_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "CHAINSENSE_DEPLOYER_KEY is not set" in result.output


def test_unreachable_rpc_exits_3_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["chain", "status", "--rpc", url], env={"CHAINSENSE_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 3
    assert url in result.output
    assert "unreachable" in result.output
