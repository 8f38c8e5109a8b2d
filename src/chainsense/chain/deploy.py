"""Deploying the ChainSense contracts, recording deployments per chain id, and checking them.

A deployment record (``<data_dir>/deployments/<chainId>.json``) holds, for each contract, its
address, the deployment transaction and block, and the sha256 of the artifact it came from; the
settlement contracts' parameters (payment token, periods) are in ``parameters``.

Settlement contracts (ColdChainEscrow, EnergyMarket, ChargingPayments) are paid in an ERC-20 given
at deployment; without one, a TestStablecoin is deployed (development chains) and the accounts
in ``fund`` get test money. A record made before the settlement contracts existed is completed on
the next :func:`ensure_deployed`. On
start, :func:`ensure_deployed` reuses the record when the chain still has that code, deploys when
there is no record, and otherwise stops with a clear error (or, on the disposable dev chain,
redeploys and says so).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

from chainsense.chain.client import ChainClient, Signer
from chainsense.contracts import Artifact, load_artifact
from chainsense.errors import DeploymentError

__all__ = [
    "CORE_CONTRACTS",
    "SETTLEMENT_CONTRACTS",
    "BytecodeCheck",
    "DeployedContract",
    "Deployment",
    "DeploymentStore",
    "SettlementParams",
    "check_bytecode",
    "deploy_core",
    "deploy_settlement",
    "ensure_deployed",
    "published_deployment",
    "verify_deployment",
]

log = logging.getLogger(__name__)

CORE_CONTRACTS = ("DeviceRegistry", "ReadingAnchor")
SETTLEMENT_CONTRACTS = ("ColdChainEscrow", "EnergyMarket", "ChargingPayments")
DEV_FUNDING = 1_000_000 * 10**6
"""Test stablecoin units (6 decimals) minted to each funded dev account: 1,000,000 tUSD."""


@dataclass(frozen=True)
class SettlementParams:
    """Constructor parameters of the settlement contracts (seconds unless named otherwise)."""

    token: str | None = None
    """The payment ERC-20; None deploys a TestStablecoin (development chains only)."""
    challenge_period: int = 3_600
    report_timeout: int = 3_600
    market_interval: int = 900
    market_settlement_period: int = 3_600
    session_timeout: int = 4 * 3_600
    treasury: str | None = None
    """Receives the market's rounding remainders; default: the admin."""


@dataclass(frozen=True)
class DeployedContract:
    address: str
    tx_hash: str
    block_number: int
    artifact_sha256: str


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    deployer: str
    roles: dict[str, str]
    contracts: dict[str, DeployedContract]
    deployed_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    parameters: dict[str, Any] = field(default_factory=dict)
    """Settlement parameters: ``token`` (payment ERC-20 address) and the periods."""

    @property
    def has_settlement(self) -> bool:
        return all(name in self.contracts for name in SETTLEMENT_CONTRACTS)

    @property
    def payment_token(self) -> str:
        token = self.parameters.get("token")
        if not isinstance(token, str):
            raise DeploymentError(f"no payment token in the deployment record of {self.chain_id}")
        return token

    def address(self, name: str) -> str:
        try:
            return self.contracts[name].address
        except KeyError:
            raise DeploymentError(
                f"{name} is not in the deployment record for chain {self.chain_id}"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            chain_id=data["chain_id"],
            deployer=data["deployer"],
            roles=data["roles"],
            contracts={k: DeployedContract(**v) for k, v in data["contracts"].items()},
            deployed_at=data["deployed_at"],
            parameters=data.get("parameters", {}),
        )


class DeploymentStore:
    """Deployment records, one JSON file per chain id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, chain_id: int) -> Path:
        return self.directory / f"{chain_id}.json"

    def load(self, chain_id: int) -> Deployment | None:
        path = self.path(chain_id)
        if not path.exists():
            return None
        try:
            return Deployment.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise DeploymentError(f"deployment record {path} is unreadable: {exc}") from exc

    def save(self, deployment: Deployment) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(deployment.chain_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
        os.replace(tmp, path)
        return path


async def _deploy_one(
    client: ChainClient, deployer: Signer, name: str, *args: Any
) -> DeployedContract:
    artifact = load_artifact(name)
    factory = client.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = await deployer.transact(factory.constructor(*args))
    address = receipt["contractAddress"]
    if address is None:
        raise DeploymentError(f"deploying {name} produced no contract address")
    log.info("deployed %s at %s", name, address)
    return DeployedContract(
        address=address,
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=receipt["blockNumber"],
        artifact_sha256=artifact.sha256,
    )


async def deploy_core(
    client: ChainClient, deployer: Signer, *, admin: str, operator: str, anchorer: str
) -> Deployment:
    """Deploy DeviceRegistry(admin, operator) and ReadingAnchor(admin, anchorer)."""
    registry = await _deploy_one(client, deployer, "DeviceRegistry", admin, operator)
    anchor = await _deploy_one(client, deployer, "ReadingAnchor", admin, anchorer)
    return Deployment(
        chain_id=await client.chain_id(),
        deployer=deployer.address,
        roles={"admin": admin, "operator": operator, "anchorer": anchorer},
        contracts={"DeviceRegistry": registry, "ReadingAnchor": anchor},
    )


async def deploy_settlement(
    client: ChainClient,
    deployer: Signer,
    core: Deployment,
    *,
    oracle: str,
    params: SettlementParams | None = None,
    fund: Sequence[str] = (),
) -> Deployment:
    """Deploy the settlement contracts next to ``core`` (admin: the deployer; ORACLE_ROLE of the
    escrow: ``oracle``). Without ``params.token``, deploy a TestStablecoin and mint
    :data:`DEV_FUNDING` to every address of ``fund``. Returns ``core`` completed."""
    params = params or SettlementParams()
    admin = deployer.address
    contracts = dict(core.contracts)
    token = params.token
    if token is None:
        stablecoin = await _deploy_one(client, deployer, "TestStablecoin", admin)
        contracts["TestStablecoin"] = stablecoin
        token = stablecoin.address
        coin = client.contract("TestStablecoin", token)
        for account in fund:
            await deployer.transact(coin.functions.mint(account, DEV_FUNDING))
    elif fund:
        raise DeploymentError("only a TestStablecoin deployed here can fund accounts")
    registry, anchor = core.address("DeviceRegistry"), core.address("ReadingAnchor")
    common = (token, registry, anchor)
    contracts["ColdChainEscrow"] = await _deploy_one(
        client, deployer, "ColdChainEscrow", admin, oracle, *common,
        params.challenge_period, params.report_timeout,
    )  # fmt: skip
    contracts["EnergyMarket"] = await _deploy_one(
        client, deployer, "EnergyMarket", admin, params.treasury or admin, *common,
        params.market_interval, params.market_settlement_period,
    )  # fmt: skip
    contracts["ChargingPayments"] = await _deploy_one(
        client, deployer, "ChargingPayments", admin, *common, params.session_timeout
    )
    parameters = {**asdict(params), "token": token, "treasury": params.treasury or admin}
    return replace(
        core, contracts=contracts, roles={**core.roles, "oracle": oracle}, parameters=parameters
    )


@dataclass(frozen=True)
class BytecodeCheck:
    """The result of comparing on-chain runtime code with an artifact."""

    contract: str
    address: str
    match: bool
    detail: str


def _mask_immutables(code: bytes, artifact: Artifact) -> bytes:
    masked = bytearray(code)
    for refs in artifact.immutable_references.values():
        for ref in refs:
            start, length = ref["start"], ref["length"]
            masked[start : start + length] = bytes(length)
    return bytes(masked)


async def check_bytecode(
    client: ChainClient, name: str, address: str, artifact: Artifact | None = None
) -> BytecodeCheck:
    """Compare the runtime code at ``address`` with the artifact's deployed bytecode, as an
    explorer's verification does: byte for byte, except the immutable slots the constructor
    fills (their positions come from the compiler's immutableReferences)."""
    artifact = artifact or load_artifact(name)
    onchain = await client.get_code(address)
    expected = bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x"))
    if not onchain:
        return BytecodeCheck(name, address, False, "no code at this address")
    if len(onchain) != len(expected):
        return BytecodeCheck(
            name, address, False, f"code size {len(onchain)} bytes, artifact {len(expected)} bytes"
        )
    if _mask_immutables(onchain, artifact) != _mask_immutables(expected, artifact):
        masked_a = _mask_immutables(onchain, artifact)
        masked_b = _mask_immutables(expected, artifact)
        first = next(i for i, (a, b) in enumerate(zip(masked_a, masked_b, strict=True)) if a != b)
        return BytecodeCheck(name, address, False, f"code differs from byte {first}")
    digest = "0x" + keccak(onchain).hex()
    return BytecodeCheck(name, address, True, f"runtime code matches (keccak {digest[:18]}…)")


async def published_deployment(client: ChainClient, deployment: Deployment) -> dict[str, Any]:
    """The deployment document verifiers pin proofs to (``chainsense.deployment.v1``, see
    :mod:`chainsense.provenance.pins`): chain id, and per contract its address, the keccak256 of
    the runtime code now at that address (``EXTCODEHASH``), the sha256 of the artifact it was
    deployed from, and its deployment transaction and block. Integers are decimal strings."""
    contracts: dict[str, Any] = {}
    for name, deployed in deployment.contracts.items():
        code = await client.get_code(deployed.address)
        if not code:
            raise DeploymentError(f"no code at {name} {deployed.address} on {deployment.chain_id}")
        contracts[name] = {
            "address": deployed.address,
            "code_hash": "0x" + keccak(code).hex(),
            "artifact_sha256": deployed.artifact_sha256,
            "tx_hash": deployed.tx_hash,
            "block_number": str(deployed.block_number),
        }
    return {
        "format": "chainsense.deployment.v1",
        "chain_id": str(deployment.chain_id),
        "contracts": contracts,
    }


async def verify_deployment(client: ChainClient, deployment: Deployment) -> list[BytecodeCheck]:
    """Check every contract of a deployment record against its artifact."""
    return [
        await check_bytecode(client, name, deployed.address)
        for name, deployed in deployment.contracts.items()
    ]


async def ensure_deployed(
    client: ChainClient,
    deployer: Signer,
    store: DeploymentStore,
    *,
    operator: str,
    anchorer: str,
    redeploy_if_missing: bool = False,
    oracle: str | None = None,
    settlement: SettlementParams | None = None,
    fund: Sequence[str] = (),
) -> tuple[Deployment, bool]:
    """Return the chain's deployment, deploying when there is none (core and settlement
    contracts; the escrow oracle defaults to ``operator``). A recorded deployment without the
    settlement contracts gets them. The flag says whether this call deployed anything."""
    chain_id = await client.chain_id()
    existing = store.load(chain_id)
    if existing is not None:
        checks = await verify_deployment(client, existing)
        bad = [c for c in checks if not c.match]
        if not bad:
            if existing.has_settlement:
                return existing, False
            completed = await deploy_settlement(
                client, deployer, existing, oracle=oracle or operator, params=settlement, fund=fund
            )
            store.save(completed)
            return completed, True
        problems = "; ".join(f"{c.contract} at {c.address}: {c.detail}" for c in bad)
        if not redeploy_if_missing:
            raise DeploymentError(
                f"deployment record {store.path(chain_id)} does not match chain {chain_id}: "
                f"{problems}. Redeploy with `chainsense contracts deploy` or fix the RPC URL."
            )
        log.warning("dev chain lost the recorded deployment (%s); deploying again", problems)
    core = await deploy_core(
        client, deployer, admin=deployer.address, operator=operator, anchorer=anchorer
    )
    deployment = await deploy_settlement(
        client, deployer, core, oracle=oracle or operator, params=settlement, fund=fund
    )
    store.save(deployment)
    return deployment, True
