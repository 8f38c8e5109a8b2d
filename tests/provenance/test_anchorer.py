"""The batcher/anchorer against a real Anvil and a real SQLite store.

Crash safety with real process kills is in test_crash.py; here each step is driven directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from chainsense.chain import ChainClient, Signer
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.errors import ChainUnavailableError
from chainsense.provenance import MerkleTree
from chainsense.provenance.anchorer import Anchorer, AnchorPolicy
from chainsense.store import BatchState, Store
from tests.store._support import address, reading, register
from tests.support import DeployedChain, deployed_chain

from ._proxy import RpcProxy

pytestmark = pytest.mark.chain


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DeployedChain]:
    async with deployed_chain(tmp_path_factory.mktemp("anchorer")) as deployed:
        yield deployed


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'chainsense.db'}")
    try:
        yield opened
    finally:
        await opened.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def make_anchorer(
    chain: DeployedChain, store: Store, *, client: ChainClient | None = None, **policy: object
) -> Anchorer:
    client = client or chain.client
    return Anchorer(
        store=store,
        client=client,
        signer=Signer(client, ANVIL_DEV_KEYS[2]),
        contract=chain.deployment.address("ReadingAnchor"),
        policy=AnchorPolicy(**policy),  # type: ignore[arg-type]
    )


async def store_readings(store: Store, n: int) -> list[int]:
    """``n`` readings of a device no other test uses (so roots never repeat across tests)."""
    device = address(secrets.randbits(64))
    await register(store, device)
    results = await store.readings.insert_batch([reading(device, s) for s in range(1, n + 1)])
    return [r.reading_id for r in results if r.reading_id is not None]


async def anchored_on_chain(chain: DeployedChain, root: bytes) -> tuple[int, int, int]:
    contract = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    count, block, time = await chain.client.call(contract.functions.anchorOf(root))
    return int(count), int(block), int(time)


async def root_anchored_events(chain: DeployedChain, root: bytes) -> int:
    contract = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    logs = await contract.events.RootAnchored.get_logs(
        from_block=0, argument_filters={"root": root}
    )
    return len(logs)


async def test_seal_waits_for_size_or_age(chain: DeployedChain, store: Store) -> None:
    anchorer = make_anchorer(chain, store, max_size=3, max_age=5.0)
    ids = await store_readings(store, 7)
    anchorer._clock = clock = Clock()  # "now" is just after the readings were stored
    sealed = await anchorer.seal_due()  # two full batches; one reading left, too young
    assert [b.reading_count for b in sealed] == [3, 3]
    assert [i for i, _ in await store.batches.struct_hashes(sealed[0].id)] == ids[:3]
    assert await anchorer.seal_due() == []
    clock.now += timedelta(seconds=5)
    (late,) = await anchorer.seal_due()
    assert late.reading_count == 1
    assert [i for i, _ in await store.batches.struct_hashes(late.id)] == ids[6:]
    hashes = [h for _, h in await store.batches.struct_hashes(sealed[1].id)]
    assert sealed[1].root == MerkleTree(hashes).root


async def test_anchor_sends_one_transaction_and_records_the_block(
    chain: DeployedChain, store: Store
) -> None:
    anchorer = make_anchorer(chain, store, max_size=100)
    await store_readings(store, 5)
    (batch,) = await anchorer.seal_now()
    (done,) = await anchorer.anchor_sealed()
    assert done.id == batch.id
    assert done.state is BatchState.ANCHORED
    count, block, time = await anchored_on_chain(chain, batch.root)
    assert (count, block, time) == (5, done.block_number, done.block_time)
    assert done.tx_hash is not None
    receipt = await chain.client.w3.eth.get_transaction_receipt(done.tx_hash)
    assert bytes(receipt["blockHash"]) == done.block_hash
    assert await anchorer.anchor_sealed() == []  # nothing left: nothing sent
    assert await root_anchored_events(chain, batch.root) == 1


async def test_an_anchor_sent_before_a_crash_is_recorded_not_resent(
    chain: DeployedChain, store: Store
) -> None:
    anchorer = make_anchorer(chain, store)
    await store_readings(store, 3)
    (batch,) = await anchorer.seal_now()
    # the previous process sent the transaction, then died before recording it
    contract = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    await anchorer.signer.transact(
        contract.functions.anchor(batch.root, batch.reading_count, batch.id.to_bytes(32, "big"))
    )
    nonce = await chain.client.w3.eth.get_transaction_count(anchorer.signer.address)
    (done,) = await anchorer.anchor_sealed()
    assert done.state is BatchState.ANCHORED
    assert await chain.client.w3.eth.get_transaction_count(anchorer.signer.address) == nonce
    assert await root_anchored_events(chain, batch.root) == 1


async def test_confirmations_are_awaited_before_a_batch_counts_as_anchored(
    chain: DeployedChain, store: Store
) -> None:
    anchorer = make_anchorer(chain, store, confirmations=3)
    await store_readings(store, 2)
    (batch,) = await anchorer.seal_now()
    assert await anchorer.anchor_sealed() == []  # mined, 1 confirmation of 3
    again = await store.batches.get(batch.id)
    assert again is not None
    assert again.state is BatchState.SEALED
    await chain.client.w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
    (done,) = await anchorer.anchor_sealed()
    assert done.state is BatchState.ANCHORED
    assert await root_anchored_events(chain, batch.root) == 1  # waiting did not resend


async def test_a_reorg_that_drops_the_anchor_reanchors_the_batch(
    chain: DeployedChain, store: Store
) -> None:
    w3 = chain.client.w3
    anchorer = make_anchorer(chain, store)
    await store_readings(store, 4)
    (batch,) = await anchorer.seal_now()
    snapshot = (await w3.provider.make_request("evm_snapshot", []))["result"]  # type: ignore[arg-type]
    (first,) = await anchorer.anchor_sealed()
    assert await anchorer.check_anchors() == []  # nothing changed yet
    # The chain reorganises: the anchor's block is replaced by other blocks.
    await w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    await w3.provider.make_request("anvil_mine", [3])  # type: ignore[arg-type]
    assert (await anchored_on_chain(chain, batch.root))[1] == 0
    assert await anchorer.check_anchors() == [batch.id]
    back = await store.batches.get(batch.id)
    assert back is not None
    assert back.state is BatchState.SEALED
    assert back.last_error is not None
    assert "reorg" in back.last_error
    (second,) = await anchorer.anchor_sealed()
    assert second.block_hash != first.block_hash
    assert second.block_number is not None
    assert first.block_number is not None
    assert second.block_number > first.block_number
    assert (await anchored_on_chain(chain, batch.root))[1] == second.block_number
    assert anchorer.state.reanchored == 1
    assert await anchorer.check_anchors() == []


async def test_rpc_outage_keeps_sealing_shows_the_backlog_and_catches_up(
    chain: DeployedChain, store: Store
) -> None:
    proxy = RpcProxy("127.0.0.1", chain.devchain.port)
    await proxy.start()
    client = await ChainClient.connect(proxy.url, timeout=1.0, retries=0)
    anchorer = make_anchorer(
        chain, store, client=client, max_size=10, max_age=0.2, poll_interval=0.05, max_backoff=0.5
    )
    task = asyncio.create_task(anchorer.run())
    try:
        await store_readings(store, 5)
        await _until(lambda: anchorer.state.batches_anchored >= 1)
        await proxy.cut()
        ids = await store_readings(store, 25)  # ingestion goes on storing
        await _until(lambda: anchorer.state.consecutive_failures >= 2)
        state, backlog = await anchorer.status()
        assert state.chain_ok is False
        assert isinstance(state.last_error, str)
        assert "unavailable" in state.last_error or "127.0.0.1" in state.last_error
        assert backlog.sealed_readings + backlog.unbatched_readings >= 25
        assert backlog.sealed_batches >= 1  # sealing does not need the chain
        assert backlog.oldest_unanchored_at is not None
        failed = await store.batches.find(state=BatchState.SEALED)
        assert any(b.attempts >= 1 for b in failed)
        await proxy.start()  # the RPC comes back

        async def caught_up() -> bool:
            return (await store.batches.backlog()).sealed_readings == 0 and (
                await store.batches.backlog()
            ).unbatched_readings == 0

        await _until_async(caught_up)
        assert anchorer.state.chain_ok is True
        last = await store.readings.get(ids[-1])
        assert last is not None
        assert last.batch_id is not None
        batch = await store.batches.get(last.batch_id)
        assert batch is not None
        assert batch.state is BatchState.ANCHORED
        for b in await store.batches.find(limit=1000):
            assert await root_anchored_events(chain, b.root) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()
        await proxy.cut()


async def test_anchoring_against_a_dead_endpoint_raises_and_counts_the_attempt(
    chain: DeployedChain, store: Store
) -> None:
    anchorer = make_anchorer(chain, store)
    await store_readings(store, 2)
    (batch,) = await anchorer.seal_now()
    dead = ChainClient("http://127.0.0.1:9", timeout=0.5, retries=0)
    anchorer_dead = make_anchorer(chain, store, client=dead)
    with pytest.raises(ChainUnavailableError):
        await anchorer_dead.anchor_sealed()
    await dead.close()
    failed = await store.batches.get(batch.id)
    assert failed is not None
    assert failed.attempts == 1
    assert failed.state is BatchState.SEALED
    (done,) = await anchorer.anchor_sealed()
    assert done.last_error is None


async def _until(check: object, timeout: float = 30.0) -> None:
    async def wrapped() -> bool:
        return bool(check())  # type: ignore[operator]

    await _until_async(wrapped, timeout)


async def _until_async(check: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_new_term_reads_the_nonce_again_after_another_process_sent(
    chain: DeployedChain, store: Store
) -> None:
    """Two processes' anchorers with the same key lead in turn (A, then B, then A again): A's
    second term sends its first transaction with the chain's nonce, not the one it cached."""
    a = make_anchorer(chain, store, max_size=100, max_age=0.0, poll_interval=0.05)
    b = make_anchorer(chain, store, max_size=100)
    await store_readings(store, 3)
    await a.seal_now()
    assert len(await a.anchor_sealed()) == 1  # A's first term: its signer caches the nonce
    await store_readings(store, 3)
    await b.seal_now()
    assert len(await b.anchor_sealed()) == 1  # B leads: the chain's nonce moves on
    await store_readings(store, 3)
    term = asyncio.create_task(a.run())  # A leads again
    try:
        await _until_async(lambda: _all_anchored(store))
    finally:
        term.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await term
    batches = await store.batches.find(limit=1000)
    assert [bt.attempts for bt in batches] == [0] * len(batches)  # no attempt failed
    assert a.state.consecutive_failures == 0


async def _all_anchored(store: Store) -> bool:
    backlog = await store.batches.backlog()
    return backlog.unbatched_readings == 0 and backlog.sealed_batches == 0
