"""Fixtures for the chain client tests: a real Anvil per module, its contracts deployed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support import DeployedChain, deployed_chain

Chain = DeployedChain


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    async with deployed_chain(tmp_path_factory.mktemp("chain")) as deployed:
        yield deployed
