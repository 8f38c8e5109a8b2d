"""Fixtures for the chain client tests: a real Anvil per module, its contracts deployed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from chainsense.chain import ChainClient, Deployment, DeploymentStore, DevChain, Signer
from chainsense.chain.deploy import ensure_deployed
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.support import free_port


@dataclass
class Chain:
    devchain: DevChain
    client: ChainClient
    deployer: Signer
    operator: Signer
    anchorer: Signer
    deployment: Deployment
    store: DeploymentStore


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    base: Path = tmp_path_factory.mktemp("chain")
    devchain = DevChain(state_dir=base / "anvil", port=free_port(), state_interval=3600)
    await devchain.start()
    try:
        client = await ChainClient.connect(devchain.rpc_url)
        try:
            deployer, operator, anchorer = (Signer(client, k) for k in ANVIL_DEV_KEYS[:3])
            store = DeploymentStore(base / "deployments")
            deployment, _ = await ensure_deployed(
                client, deployer, store, operator=operator.address, anchorer=anchorer.address
            )
            yield Chain(devchain, client, deployer, operator, anchorer, deployment, store)
        finally:
            await client.close()
    finally:
        await devchain.stop()
