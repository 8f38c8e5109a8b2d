"""Deploying the ChainSense contracts, recording deployments per chain id, and checking them.

A deployment record (``<data_dir>/deployments/<chainId>.json``) holds, for each contract, its
address, the deployment transaction and block, and the sha256 of the artifact it came from. On
start, :func:`ensure_deployed` reuses the record when the chain still has that code, deploys when
there is no record, and otherwise stops with a clear error (or, on the disposable dev chain,
redeploys and says so).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

from chainsense.chain.client import ChainClient, Signer
from chainsense.contracts import Artifact, load_artifact
from chainsense.errors import DeploymentError

__all__ = [
    "CORE_CONTRACTS",
    "BytecodeCheck",
    "DeployedContract",
    "Deployment",
    "DeploymentStore",
    "check_bytecode",
    "deploy_core",
    "ensure_deployed",
    "verify_deployment",
]

log = logging.getLogger(__name__)

CORE_CONTRACTS = ("DeviceRegistry", "ReadingAnchor")


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
) -> tuple[Deployment, bool]:
    """Return the chain's deployment, deploying when there is none. The flag says whether this
    call deployed."""
    chain_id = await client.chain_id()
    existing = store.load(chain_id)
    if existing is not None:
        checks = await verify_deployment(client, existing)
        bad = [c for c in checks if not c.match]
        if not bad:
            return existing, False
        problems = "; ".join(f"{c.contract} at {c.address}: {c.detail}" for c in bad)
        if not redeploy_if_missing:
            raise DeploymentError(
                f"deployment record {store.path(chain_id)} does not match chain {chain_id}: "
                f"{problems}. Redeploy with `chainsense contracts deploy` or fix the RPC URL."
            )
        log.warning("dev chain lost the recorded deployment (%s); deploying again", problems)
    deployment = await deploy_core(
        client, deployer, admin=deployer.address, operator=operator, anchorer=anchorer
    )
    store.save(deployment)
    return deployment, True
