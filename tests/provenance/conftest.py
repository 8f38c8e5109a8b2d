"""One Anvil for the provenance tests, with both contracts deployed, four devices registered
and a batch of their readings anchored; tests that change the chain run inside an EVM snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chainsense.chain import ChainClient, DevChain, Signer, deploy_core
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.errors import DevChainError
from chainsense.provenance import ProofDocument
from tests.provenance.support import METER, Chain, device_keys
from tests.support import free_port


async def _start(state_dir: Path) -> DevChain:
    for attempt in range(3):  # another process may take the probed port before Anvil binds it
        devchain = DevChain(state_dir=state_dir, port=free_port(), state_interval=3600.0)
        try:
            await devchain.start()
        except DevChainError:
            await devchain.stop()
            if attempt == 2:
                raise
        except BaseException:
            await devchain.stop()
            raise
        else:
            return devchain
    raise AssertionError("unreachable")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    devchain = await _start(tmp_path_factory.mktemp("provenance-anvil"))
    try:
        client = await ChainClient.connect(devchain.rpc_url)
        try:
            deployer, operator, anchorer = (Signer(client, k) for k in ANVIL_DEV_KEYS[:3])
            deployment = await deploy_core(
                client,
                deployer,
                admin=deployer.address,
                operator=operator.address,
                anchorer=anchorer.address,
            )
            yield Chain(
                rpc_url=devchain.rpc_url,
                client=client,
                operator=operator,
                anchorer=anchorer,
                registry=deployment.address("DeviceRegistry"),
                anchor=deployment.address("ReadingAnchor"),
                chain_id=deployment.chain_id,
            )
        finally:
            await client.close()
    finally:
        await devchain.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def proofs(chain: Chain) -> list[ProofDocument]:
    """Proofs of one anchored batch: 4 registered devices x 3 readings, one of them a meter
    reading (so the batch mixes schemas), 12 leaves (an unbalanced tree)."""
    keys = device_keys()[:4]
    for key in keys:
        await chain.register(key)
    await chain.advance()
    items = [
        chain.sign(key, seq, (400 + 10 * i + seq, 600 - seq))
        for i, key in enumerate(keys)
        for seq in (1, 2)
    ]
    items += [chain.sign(key, 3, (-1850, 575)) for key in keys[:3]]
    items.append(chain.sign(keys[3], 3, (1200, 0), METER))
    return await chain.anchor_batch(items, label="tests-batch-1")


@pytest_asyncio.fixture(loop_scope="session")
async def snapshot(chain: Chain, proofs: list[ProofDocument]) -> AsyncIterator[Chain]:
    """The chain, with everything the test does to it reverted afterwards."""
    snap = await chain.rpc("evm_snapshot")
    try:
        yield chain
    finally:
        assert await chain.rpc("evm_revert", snap) is True
        chain.renew_signers()
