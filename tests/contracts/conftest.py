"""Fixtures for the contract tests.

One Anvil node per session (started by :class:`DevChain` on a free port, in a temp dir, and always
stopped); every chain test runs inside an ``evm_snapshot`` that is reverted afterwards, so tests are
independent and each one deploys its own contracts (at the same addresses every time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from chainsense.chain.devchain import DevChain
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.errors import DevChainError
from tests.contracts.helpers import Roles, deploy, rpc
from tests.support import free_port

CHAIN_ID = 31337


async def _start_devchain(state_dir: Path) -> DevChain:
    attempts = 3  # another process may take the probed port before Anvil binds it
    for attempt in range(1, attempts + 1):
        # No periodic state dumps: the tests never restart this node.
        chain = DevChain(
            state_dir=state_dir, port=free_port(), chain_id=CHAIN_ID, state_interval=3600.0
        )
        try:
            await chain.start()
        except DevChainError:
            await chain.stop()
            if attempt == attempts:
                raise
        except BaseException:
            await chain.stop()
            raise
        else:
            return chain
    raise AssertionError("unreachable")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def anvil(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevChain]:
    """One Anvil for the session, stopped however the session ends."""
    chain = await _start_devchain(tmp_path_factory.mktemp("anvil"))
    try:
        yield chain
    finally:
        await chain.stop()


@pytest.fixture(scope="session")
def w3(anvil: DevChain) -> Web3:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))
    assert web3.eth.chain_id == CHAIN_ID
    return web3


@pytest.fixture(scope="session")
def chain_id() -> int:
    return CHAIN_ID


@pytest.fixture(scope="session")
def roles() -> Roles:
    admin, operator, anchorer, stranger, owner = (
        Account.from_key(key) for key in ANVIL_DEV_KEYS[:5]
    )
    return Roles(admin=admin, operator=operator, anchorer=anchorer, stranger=stranger, owner=owner)


@pytest.fixture
def isolated(w3: Web3) -> Iterator[None]:
    """Run the test inside an EVM snapshot and revert everything it did afterwards.

    The chain test modules apply it to every test (``pytest.mark.usefixtures("isolated")``)."""
    snapshot = rpc(w3, "evm_snapshot")
    yield
    assert rpc(w3, "evm_revert", snapshot) is True


@pytest.fixture
def registry(w3: Web3, roles: Roles, isolated: None) -> Contract:
    """A fresh DeviceRegistry(admin, operator)."""
    return deploy(
        w3,
        "DeviceRegistry",
        roles.admin.address,
        roles.operator.address,
        sender=roles.admin.address,
    )


@pytest.fixture
def anchor(w3: Web3, roles: Roles, isolated: None) -> Contract:
    """A fresh ReadingAnchor(admin, anchorer)."""
    return deploy(
        w3, "ReadingAnchor", roles.admin.address, roles.anchorer.address, sender=roles.admin.address
    )
