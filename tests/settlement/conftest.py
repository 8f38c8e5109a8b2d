"""A real Anvil per module with the core and settlement contracts deployed (TestStablecoin,
every dev account funded), as the platform deploys them on its dev chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from eth_account import Account

from chainsense.chain import ChainClient, Deployment, DeploymentStore, DevChain, Signer
from chainsense.chain.deploy import ensure_deployed
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.settlement import Settlement, open_settlement
from tests.support import free_port


@dataclass
class Env:
    client: ChainClient
    deployment: Deployment
    settlement: Settlement
    signers: list[Signer]
    """Anvil dev keys 0..9: deployer/admin, operator (oracle), anchorer, then users."""

    async def rpc(self, method: str, *params: object) -> object:
        response = await self.client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    base: Path = tmp_path_factory.mktemp("settlement")
    devchain = DevChain(state_dir=base / "anvil", port=free_port(), state_interval=3600)
    await devchain.start()
    try:
        client = await ChainClient.connect(devchain.rpc_url)
        try:
            signers = [Signer(client, k) for k in ANVIL_DEV_KEYS]
            deployment, _ = await ensure_deployed(
                client,
                signers[0],
                DeploymentStore(base / "deployments"),
                operator=signers[1].address,
                anchorer=signers[2].address,
                fund=[Account.from_key(k).address for k in ANVIL_DEV_KEYS],
            )
            yield Env(client, deployment, open_settlement(client, deployment), signers)
        finally:
            await client.close()
    finally:
        await devchain.stop()
