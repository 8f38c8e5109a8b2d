"""The anchorer under faults it cannot retry away, against a real Anvil and a real SQLite store:
an anchorer account without funds blocks anchoring (no transaction retried on a timer) until it
is funded; a store that refuses sealing makes ``chain_ok`` false; recovery clears ``last_error``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from chainsense.observability.metrics import metrics
from chainsense.store import BatchState, Store
from tests.provenance.test_anchorer import make_anchorer, store_readings
from tests.support import DeployedChain, deployed_chain

pytestmark = pytest.mark.chain


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DeployedChain]:
    async with deployed_chain(tmp_path_factory.mktemp("anchorer-faults")) as deployed:
        yield deployed


async def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_an_unfunded_anchorer_is_blocked_not_retried_until_funded(
    chain: DeployedChain, tmp_path: Path
) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'chainsense.db'}")
    w3 = chain.client.w3
    account = chain.anchorer.address
    funds = await w3.eth.get_balance(account)
    anchorer = make_anchorer(
        chain, store, max_size=10, max_age=0.1, poll_interval=0.05, max_backoff=0.3
    )
    task = asyncio.create_task(anchorer.run())
    try:
        await w3.provider.make_request("anvil_setBalance", [account, "0x0"])
        await store_readings(store, 3)
        await _until(lambda: anchorer.state.blocked is not None)
        assert "cannot pay for gas" in str(anchorer.state.blocked)
        assert account in str(anchorer.state.blocked)
        assert metrics().anchorer_blocked._value.get() == 1
        (batch,) = await store.batches.find(state=BatchState.SEALED)
        await asyncio.sleep(1.5)  # five backoffs' worth: a timer would have retried by now
        again = await store.batches.get(batch.id)
        assert again is not None
        assert again.attempts == batch.attempts == 1
        assert anchorer.state.chain_ok is False

        await w3.provider.make_request("anvil_setBalance", [account, hex(funds)])
        await _until(lambda: anchorer.state.batches_anchored >= 1)
        assert anchorer.state.blocked is None
        assert metrics().anchorer_blocked._value.get() == 0
        await _until(lambda: anchorer.state.chain_ok)
        assert anchorer.state.last_error is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await w3.provider.make_request("anvil_setBalance", [account, hex(funds)])
        await store.close()


async def test_failing_sealing_is_not_chain_ok_and_recovery_clears_the_error(
    chain: DeployedChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a short busy timeout, so a write lock held by another connection fails sealing quickly
    monkeypatch.setattr("chainsense.store.engine.BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "chainsense.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    anchorer = make_anchorer(
        chain, store, max_size=1000, max_age=0.1, poll_interval=0.05, max_backoff=0.3
    )
    task = asyncio.create_task(anchorer.run())
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store_readings(store, 2)
        await _until(lambda: anchorer.state.batches_anchored >= 1)
        assert anchorer.state.chain_ok is True
        await store_readings(store, 2)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: sealing fails
        await _until(lambda: anchorer.state.sealing_error is not None)
        assert anchorer.state.chain_ok is False
        assert "sealing failed" in str(anchorer.state.last_error)
        assert "locked" in str(anchorer.state.sealing_error)
        other.execute("ROLLBACK")
        await _until(lambda: anchorer.state.batches_anchored >= 2)
        await _until(lambda: anchorer.state.sealing_error is None)
        assert anchorer.state.chain_ok is True
        assert anchorer.state.last_error is None
    finally:
        other.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()
