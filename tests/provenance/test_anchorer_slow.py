"""Anchoring keeps up with a slow node: a real Anvil behind a proxy that answers every round trip
late (tests/provenance/_slow_rpc.py), readings stored at a steady rate, the default batch policy.

Before rounds of batched requests, a 2 s node let one anchor out per minute while ~30 batches
were sealed (issue 16); a round now costs a few round trips however many batches it holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chainsense.chain import ChainClient, Signer
from chainsense.chain.client import RpcFailure, SentTransaction
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.errors import TransactionRejectedError
from tests.provenance._slow_rpc import SlowRpc
from tests.provenance.slow_node import run_slow_node
from tests.support import DeployedChain, deployed_chain

pytestmark = pytest.mark.chain


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DeployedChain]:
    async with deployed_chain(tmp_path_factory.mktemp("anchorer-slow")) as deployed:
        yield deployed


async def test_anchoring_keeps_up_with_a_node_answering_one_second_late(
    chain: DeployedChain, tmp_path: Path
) -> None:
    run = await run_slow_node(chain, tmp_path, delay=1.0, seconds=24.0, rate=50.0)
    print(run.line())
    assert run.sealed >= 8  # the default policy seals every 2 s at this rate
    # the backlog stays within about one round (a few seconds of batches), it does not grow
    assert run.backlog_end <= 4, run.line()
    assert run.backlog_max <= 8, run.line()
    assert run.anchored >= run.sealed - 4, run.line()
    # a handful of round trips per round, not a dozen per batch
    assert run.round_trips_per_anchor <= 3.0, run.line()
    assert run.calls.get("eth_estimateGas", 0) <= 1  # estimated once, not per transaction
    assert run.calls.get("eth_chainId", 0) <= 1


async def test_send_many_sends_in_one_round_trip_and_again_after_a_taken_nonce(
    chain: DeployedChain,
) -> None:
    """Three transactions signed with consecutive nonces go out in one round trip, with no
    estimate, nonce or chain-id read of their own; when another sender of the key took the
    cached nonce, they go out again with the chain's nonce."""
    async with SlowRpc(chain.devchain.rpc_url, 0.0) as proxy:
        client = await ChainClient.connect(proxy.url)
        try:
            signer = Signer(client, ANVIL_DEV_KEYS[5])
            other = Signer(chain.client, ANVIL_DEV_KEYS[5])
            registry = client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
            fn = registry.functions.isActiveKey(chain.operator.address)  # any call: gas is given
            first = await signer.send_many([fn, fn, fn], gas=60_000)
            nonces = [s.nonce for s in first]  # type: ignore[union-attr]
            assert nonces == [0, 1, 2]  # a key nothing else in this module sends with
            proxy.reset()
            again = await signer.send_many([fn, fn, fn], gas=60_000)
            assert [s.nonce for s in again] == [3 + i for i in range(3)]  # type: ignore[union-attr]
            assert proxy.round_trips == 1  # fees, nonce and chain id cached: only the send
            assert dict(proxy.calls) == {"eth_sendRawTransaction": 3}
            receipts = await client.wait_for_receipts([s.tx_hash for s in again])  # type: ignore[union-attr]
            assert len(receipts) == 3

            await other.transact(fn, gas=60_000)  # takes the nonce `signer` has cached
            taken = await signer.send_many([fn, fn], gas=60_000)
            assert not any(isinstance(s, BaseException) for s in taken), taken
            # the first (nonce 6) was refused and sent again with nonce 8; the second went
            # out with nonce 7 at once
            assert [s.nonce for s in taken] == [8, 7]  # type: ignore[union-attr]
            receipts = await client.wait_for_receipts([s.tx_hash for s in taken])  # type: ignore[union-attr]
            assert all(int(r["status"], 16) == 1 for r in receipts.values())
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("max_batch", "refuse"),
    [(3, "error"), (5, "413"), (0, "400")],
    ids=["geth-style-cap", "http-413-cap", "no-batches"],
)
async def test_a_node_that_caps_or_refuses_batches_gets_smaller_ones(
    chain: DeployedChain, max_batch: int, refuse: str
) -> None:
    """Every answer is the one an uncapped node gives, in order; the client learns the cap."""
    blocks = [n % (await chain.client.block_number() + 1) for n in range(12)]
    requests: list[tuple[str, list[Any]]] = [
        ("eth_getBlockByNumber", [hex(n), False]) for n in blocks
    ]
    requests.append(("eth_getTransactionReceipt", ["0x" + "00" * 31 + "01"]))  # no such tx: None
    requests.append(("eth_call", [{"to": "0x" + "11" * 20, "data": "0xzz"}, "latest"]))  # error
    expected = await chain.client.batch(requests)
    async with SlowRpc(
        chain.devchain.rpc_url,
        0.0,
        max_batch=max_batch,
        refuse=refuse,  # type: ignore[arg-type]
    ) as proxy:
        client = await ChainClient.connect(proxy.url)
        try:
            assert await client.batch(requests) == expected
            assert proxy.refused >= 1
            limit = client._batch_limit
            assert limit is not None
            assert limit <= max(1, max_batch)
            proxy.refused = 0
            assert await client.batch(requests) == expected  # the learned size: no refusal
            assert proxy.refused == 0
        finally:
            await client.close()
    assert isinstance(expected[-1], RpcFailure)
    assert expected[-2] is None
    assert [int(b["number"], 16) for b in expected[:12]] == blocks


async def test_anchoring_goes_on_through_a_node_that_takes_no_batches(
    chain: DeployedChain, tmp_path: Path
) -> None:
    # Before the client split refused batches, every round failed with "batch request
    # refused" and nothing was anchored.
    run = await run_slow_node(
        chain, tmp_path, delay=0.0, seconds=8.0, rate=50.0,
        proxy_options={"max_batch": 0, "refuse": "400"},
    )  # fmt: skip
    print(run.line())
    assert run.sealed >= 3
    assert run.anchored >= run.sealed - 2, run.line()


async def test_a_refusal_in_the_middle_of_a_group_leaves_no_lasting_nonce_gap(
    chain: DeployedChain,
) -> None:
    """The node refuses the second of three transactions signed with consecutive nonces: the
    third waits in its pool behind the gap; the next transaction the signer sends takes the
    refused one's nonce, and then both are mined."""
    async with SlowRpc(chain.devchain.rpc_url, 0.0) as proxy:
        client = await ChainClient.connect(proxy.url)
        try:
            signer = Signer(client, ANVIL_DEV_KEYS[6])  # a key nothing else here sends with
            registry = client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
            fn = registry.functions.isActiveKey(chain.operator.address)
            proxy.refuse_sends = {1: "insufficient funds for gas * price + value"}
            first, refused, third = await signer.send_many([fn, fn, fn], gas=60_000)
            assert isinstance(refused, TransactionRejectedError)
            assert "insufficient funds" in str(refused)
            assert isinstance(first, SentTransaction)
            assert isinstance(third, SentTransaction)
            assert (first.nonce, third.nonce) == (0, 2)
            await client.wait_for_receipts([first.tx_hash])
            # nonce 2 waits behind the gap at nonce 1
            assert await client.wait_for_receipts([third.tx_hash], timeout=3.0) == {}
            (filler,) = await signer.send_many([fn], gas=60_000)
            assert isinstance(filler, SentTransaction)
            assert filler.nonce == 1
            receipts = await client.wait_for_receipts([filler.tx_hash, third.tx_hash])
            assert len(receipts) == 2
            assert all(int(r["status"], 16) == 1 for r in receipts.values())
            (after,) = await signer.send_many([fn], gas=60_000)
            assert isinstance(after, SentTransaction)
            assert after.nonce == 3
        finally:
            await client.close()
