"""Deployments: recorded per chain id, reused when the code is there, refused when it is not,
and checked byte for byte against the artifacts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from chainsense.chain import DeploymentStore, check_bytecode, ensure_deployed, verify_deployment
from chainsense.chain.deploy import CORE_CONTRACTS
from chainsense.contracts import load_artifact, load_artifact_file
from chainsense.errors import DeploymentError
from tests.chain.conftest import Chain

pytestmark = pytest.mark.chain


async def test_record_holds_addresses_transactions_and_artifact_hashes(chain: Chain) -> None:
    record = json.loads(chain.store.path(31337).read_text())
    for name in ("DeviceRegistry", "ReadingAnchor"):
        entry = record["contracts"][name]
        assert entry["address"].startswith("0x")
        assert len(entry["address"]) == 42
        assert len(entry["tx_hash"]) == 66
        assert entry["artifact_sha256"] == load_artifact(name).sha256
        receipt = await chain.client.w3.eth.get_transaction_receipt(entry["tx_hash"])
        assert receipt["contractAddress"] == entry["address"]
    assert record["roles"]["operator"] == chain.operator.address


async def test_second_start_reuses_the_recorded_deployment(chain: Chain) -> None:
    again, deployed_now = await ensure_deployed(
        chain.client,
        chain.deployer,
        chain.store,
        operator=chain.operator.address,
        anchorer=chain.anchorer.address,
    )
    assert not deployed_now
    assert again == chain.deployment


async def test_record_pointing_at_missing_code_is_refused(chain: Chain, tmp_path: Path) -> None:
    store = DeploymentStore(tmp_path)
    moved = {
        name: replace(c, address="0x000000000000000000000000000000000000dEaD")
        for name, c in chain.deployment.contracts.items()
    }
    store.save(replace(chain.deployment, contracts=moved))
    with pytest.raises(DeploymentError, match="no code at this address"):
        await ensure_deployed(
            chain.client,
            chain.deployer,
            store,
            operator=chain.operator.address,
            anchorer=chain.anchorer.address,
        )


async def test_deployed_code_matches_the_artifacts(chain: Chain) -> None:
    checks = await verify_deployment(chain.client, chain.deployment)
    assert [c.contract for c in checks] == [
        "DeviceRegistry",
        "ReadingAnchor",
        "TestStablecoin",
        "ColdChainEscrow",
        "EnergyMarket",
        "ChargingPayments",
    ]
    assert all(c.match for c in checks), checks


async def test_settlement_contracts_are_wired_to_the_core_and_the_token(chain: Chain) -> None:
    dep = chain.deployment
    assert dep.roles["oracle"] == chain.operator.address
    assert dep.payment_token == dep.address("TestStablecoin")
    escrow = chain.client.contract("ColdChainEscrow", dep.address("ColdChainEscrow"))
    fns = escrow.functions
    assert await chain.client.call(fns.token()) == dep.payment_token
    assert await chain.client.call(fns.registry()) == dep.address("DeviceRegistry")
    assert await chain.client.call(fns.anchors()) == dep.address("ReadingAnchor")
    oracle_role = await chain.client.call(fns.ORACLE_ROLE())
    assert await chain.client.call(fns.hasRole(oracle_role, chain.operator.address))


async def test_a_record_without_settlement_contracts_is_completed(chain: Chain) -> None:
    core_only = {n: c for n, c in chain.deployment.contracts.items() if n in CORE_CONTRACTS}
    store = DeploymentStore(chain.store.directory.parent / "core-only")
    store.save(replace(chain.deployment, contracts=core_only, parameters={}))
    completed, deployed_now = await ensure_deployed(
        chain.client,
        chain.deployer,
        store,
        operator=chain.operator.address,
        anchorer=chain.anchorer.address,
    )
    assert deployed_now
    assert completed.has_settlement
    assert completed.contracts["DeviceRegistry"] == chain.deployment.contracts["DeviceRegistry"]
    assert store.load(completed.chain_id) == completed


async def test_tampered_artifact_is_a_mismatch(chain: Chain, tmp_path: Path) -> None:
    name = "ReadingAnchor"
    source = Path(__file__).parents[2] / "src/chainsense/contracts/artifacts" / f"{name}.json"
    data = json.loads(source.read_text())
    code = data["deployedBytecode"]
    # flip one byte in the middle of the runtime code
    middle = len(code) // 2 & ~1
    flipped = format(int(code[middle : middle + 2], 16) ^ 0xFF, "02x")
    data["deployedBytecode"] = code[:middle] + flipped + code[middle + 2 :]
    tampered = tmp_path / f"{name}.json"
    tampered.write_text(json.dumps(data))
    check = await check_bytecode(
        chain.client, name, chain.deployment.address(name), load_artifact_file(tampered)
    )
    assert not check.match
    assert "differs from byte" in check.detail


async def test_immutables_are_masked_but_only_they_are(chain: Chain) -> None:
    """DeviceRegistry keeps its EIP-712 domain in immutables, so its on-chain code differs from
    the artifact exactly there; the check must still match."""
    artifact = load_artifact("DeviceRegistry")
    assert artifact.immutable_references, "DeviceRegistry is expected to have immutables"
    onchain = await chain.client.get_code(chain.deployment.address("DeviceRegistry"))
    assert onchain != bytes.fromhex(artifact.deployed_bytecode[2:])
    check = await check_bytecode(
        chain.client, "DeviceRegistry", chain.deployment.address("DeviceRegistry")
    )
    assert check.match
