"""The committed gas report: one fixed scenario on fresh deployments, written to
``contracts/gas-report.md`` so a change in gas shows up in review.

The scenario and everything that feeds it (accounts, deployer nonce, hence contract addresses and
signatures) are fixed, so the file only changes when the contracts, the compiler settings or the
EVM rules change. With ``CI=true`` a difference is printed to stderr (the test does not fail, and
the committed file is left alone).
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

import pytest
from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams

from chainsense.contracts import load_artifact
from chainsense.provenance import MerkleTree
from tests.contracts import gas_settlement
from tests.contracts.helpers import (
    REPO_ROOT,
    Reading,
    Roles,
    deploy_with_receipt,
    make_account,
    reading_struct_hash,
    rpc,
    send,
    sign_reading,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

REPORT = REPO_ROOT / "contracts" / "gas-report.md"
DEPLOYER_NONCE = 1_000
"""Fixed deployer nonce, so the contract addresses (and the EIP-712 signatures over them) are the
same whatever ran before in this chain."""

Row = tuple[str, str, int]
SETTLEMENT_CLOCK = 2_000_000_000
"""Block time (s) the settlement part of the scenario starts at (2033-05-18)."""


def _estimate(w3: Web3, contract: Contract, data: str, sender: str) -> int:
    tx: TxParams = {
        "from": Web3.to_checksum_address(sender),
        "to": contract.address,
        "data": HexStr(data),
    }
    return int(w3.eth.estimate_gas(tx))


def run_scenario(w3: Web3, roles: Roles, chain_id: int) -> list[Row]:
    """Deploy both contracts, send each state-changing function once, estimate the two verifies."""
    admin, operator, anchorer = roles.admin.address, roles.operator.address, roles.anchorer.address
    rpc(w3, "anvil_setNonce", admin, hex(DEPLOYER_NONCE))
    rows: list[Row] = []

    registry, receipt = deploy_with_receipt(w3, "DeviceRegistry", admin, operator, sender=admin)
    rows.append(("DeviceRegistry", "deployment", receipt["gasUsed"]))
    anchor, receipt = deploy_with_receipt(w3, "ReadingAnchor", admin, anchorer, sender=admin)
    rows.append(("ReadingAnchor", "deployment", receipt["gasUsed"]))

    # DeviceRegistry: one device through its whole life.
    device, new_key = make_account("gas-device"), make_account("gas-device-key-2")
    registry_fns = registry.functions
    receipt = send(
        registry_fns.register(device.address, roles.owner.address, keccak(text="meta-1")),
        sender=operator,
    )
    rows.append(("DeviceRegistry", "register", receipt["gasUsed"]))

    reading = Reading(
        device=device.address,
        seq=1,
        timestamp=1_763_700_000_000,
        schema=keccak(text="chainsense.coldchain.v1"),
        values=(4150, -620),
    )
    signature = sign_reading(
        device, reading, chain_id=chain_id, verifying_contract=registry.address
    )
    assert registry_fns.verifyReading(reading.as_abi(), signature).call()  # the full, "true" path
    verify_reading_gas = _estimate(
        w3,
        registry,
        registry.encode_abi("verifyReading", args=[reading.as_abi(), signature]),
        roles.stranger.address,
    )

    for label, call, sender in [
        ("rotateKey", registry_fns.rotateKey(device.address, new_key.address), operator),
        (
            "updateMetadata",
            registry_fns.updateMetadata(device.address, keccak(text="m2")),
            operator,
        ),
        ("revoke", registry_fns.revoke(device.address), operator),
        ("pause", registry_fns.pause(), admin),
        ("unpause", registry_fns.unpause(), admin),
    ]:
        rows.append(("DeviceRegistry", label, send(call, sender=sender)["gasUsed"]))

    # ReadingAnchor: two batches, then a proof against the first.
    values = [
        reading_struct_hash(
            reading.replace(seq=i + 1, values=(4150 + i, -620)),
            chain_id=chain_id,
            verifying_contract=registry.address,
        )
        for i in range(16)
    ]
    tree = MerkleTree(values)
    for label, root, count, ref in [
        ("anchor (first root)", tree.root, 16, keccak(text="batch-1")),
        ("anchor (second root)", MerkleTree(values[:2]).root, 2, keccak(text="batch-2")),
    ]:
        receipt = send(anchor.functions.anchor(root, count, ref), sender=anchorer)
        rows.append(("ReadingAnchor", label, receipt["gasUsed"]))

    proof = tree.proof(values[0])
    assert len(proof) == 4
    leaf = anchor.functions.leafOf(values[0]).call()
    assert anchor.functions.verify(proof, tree.root, leaf).call()
    verify_proof_gas = _estimate(
        w3,
        anchor,
        anchor.encode_abi("verify", args=[proof, tree.root, leaf]),
        roles.stranger.address,
    )
    rows.append(("DeviceRegistry", "verifyReading, 2 values (eth_estimateGas)", verify_reading_gas))
    rows.append(("ReadingAnchor", "verify, 16-leaf proof (eth_estimateGas)", verify_proof_gas))
    rows.extend(run_settlement_scenario(w3, roles, chain_id))
    return rows


def run_settlement_scenario(w3: Web3, roles: Roles, chain_id: int) -> list[Row]:
    """Fresh core contracts, then each settlement contract's life, on a clock set to a fixed time
    (block times and reading times end up in calldata and storage; fixing them fixes the gas)."""
    rpc(w3, "evm_setTime", hex(SETTLEMENT_CLOCK))
    rpc(w3, "evm_mine")
    return gas_settlement.scenario(w3, roles, chain_id, clock=SETTLEMENT_CLOCK)


def render(rows: list[Row], hardfork: str) -> str:
    compiler = load_artifact("DeviceRegistry").compiler
    settings = compiler["settings"]
    version = str(compiler["version"]).split("+")[0]
    lines = [
        "# Gas report",
        "",
        "Generated by `tests/contracts/test_gas_report.py` (it runs with `make test`); do not edit",
        "by hand. One fixed scenario on fresh deployments of the shipped artifacts",
        f"(solc {version}, optimizer {settings['optimizer']['runs']} runs, "
        f"EVM {settings['evmVersion']}), on Anvil (hardfork {hardfork}).",
        "Transactions show `gasUsed` from the receipt, including the 21000 base cost and calldata;",
        "views show `eth_estimateGas`, which includes both as well.",
        "",
        "| contract | function | gas |",
        "|---|---|---:|",
        *(f"| {contract} | {function} | {gas} |" for contract, function, gas in rows),
        "",
    ]
    return "\n".join(lines)


def test_gasReport_isUpToDate(
    w3: Web3, roles: Roles, chain_id: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_scenario(w3, roles, chain_id)
    assert all(gas > 21_000 for _, _, gas in rows)
    hardfork = str(rpc(w3, "anvil_nodeInfo")["hardFork"])
    content = render(rows, hardfork)
    current = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
    if content == current:
        return
    if os.environ.get("CI") == "true":
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                content.splitlines(keepends=True),
                fromfile=f"{REPORT.relative_to(REPO_ROOT)} (committed)",
                tofile=f"{REPORT.relative_to(REPO_ROOT)} (measured)",
            )
        )
        with capsys.disabled():
            print(f"\ngas report changed:\n{diff}", file=sys.stderr)
        return
    _write(REPORT, content)


def test_gasReport_isDeterministic(w3: Web3, roles: Roles, chain_id: int) -> None:
    snapshot = rpc(w3, "evm_snapshot")
    first = run_scenario(w3, roles, chain_id)
    assert rpc(w3, "evm_revert", snapshot) is True
    rpc(w3, "evm_increaseTime", 86_400)  # a different clock must not change the numbers
    assert run_scenario(w3, roles, chain_id) == first


def _write(path: Path, content: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)
