"""The chain client against a real Anvil: reverts decoded, nonces under concurrency, receipts,
and a clear error when the RPC endpoint is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import pytest

from chainsense.chain import ChainClient, Signer
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.errors import (
    ChainTimeoutError,
    ChainUnavailableError,
    TransactionRevertedError,
)
from tests.chain.conftest import Chain
from tests.support import free_port

pytestmark = pytest.mark.chain

ZERO32 = bytes(32)


def _root(n: int) -> bytes:
    return n.to_bytes(32, "big")


async def test_transact_returns_receipt_and_decodes_duplicate_root(chain: Chain) -> None:
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    root = os.urandom(32)
    receipt = await chain.anchorer.transact(anchor.functions.anchor(root, 5, ZERO32))
    assert receipt["status"] == 1
    with pytest.raises(TransactionRevertedError) as info:
        await chain.anchorer.transact(anchor.functions.anchor(root, 5, ZERO32))
    err = info.value
    assert err.error_name == "ReadingAnchorRootAlreadyAnchored"
    assert err.error_args == {"root": "0x" + root.hex()}
    assert "ReadingAnchorRootAlreadyAnchored(root=0x" in str(err)
    assert err.function == "anchor"


async def test_revert_names_openzeppelin_error_with_arguments(chain: Chain) -> None:
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    with pytest.raises(TransactionRevertedError) as info:
        await chain.operator.transact(anchor.functions.anchor(os.urandom(32), 1, ZERO32))
    assert info.value.error_name == "AccessControlUnauthorizedAccount"
    assert info.value.error_args["account"] == chain.operator.address


async def test_mined_revert_is_decoded_from_the_receipt(chain: Chain) -> None:
    """With a fixed gas limit nothing is estimated, so the revert happens on chain and the client
    must replay the transaction to name the error."""
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    with pytest.raises(TransactionRevertedError) as info:
        await chain.anchorer.transact(anchor.functions.anchor(ZERO32, 1, ZERO32), gas=100_000)
    assert info.value.error_name == "ReadingAnchorEmptyBatch"
    assert info.value.tx_hash is not None


async def test_view_call_revert_is_decoded(chain: Chain) -> None:
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
    stranger = Signer(chain.client, ANVIL_DEV_KEYS[5])
    with pytest.raises(TransactionRevertedError) as info:
        await chain.client.call(registry.functions.revoke(stranger.address))
    assert info.value.error_name in {
        "AccessControlUnauthorizedAccount",
        "DeviceRegistryUnknownDevice",
    }


async def test_concurrent_sends_get_distinct_nonces(chain: Chain) -> None:
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    roots = [os.urandom(32) for _ in range(25)]
    receipts = await asyncio.gather(
        *(chain.anchorer.transact(anchor.functions.anchor(r, 1, ZERO32)) for r in roots)
    )
    assert all(r["status"] == 1 for r in receipts)
    assert len({r["transactionHash"] for r in receipts}) == len(roots)
    for root in roots:
        assert await chain.client.call(anchor.functions.isAnchored(root))


async def test_nonce_recovers_after_a_failed_send(chain: Chain) -> None:
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    with pytest.raises(TransactionRevertedError):
        await chain.anchorer.send(anchor.functions.anchor(ZERO32, 1, ZERO32))
    receipt = await chain.anchorer.transact(anchor.functions.anchor(os.urandom(32), 1, ZERO32))
    assert receipt["status"] == 1


async def test_a_nonce_taken_by_another_sender_of_the_key_is_retried(chain: Chain) -> None:
    """Another process signing with the same key (two Signer objects here: the operator key in
    each ``serve --workers`` worker) takes the nonce this signer cached: the send is retried with
    the chain's nonce and goes through, once."""
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    await chain.anchorer.transact(anchor.functions.anchor(os.urandom(32), 1, ZERO32))  # caches
    other = Signer(chain.client, ANVIL_DEV_KEYS[2])  # the anchorer's key, another process
    await other.transact(anchor.functions.anchor(os.urandom(32), 1, ZERO32))
    before = await chain.client.w3.eth.get_transaction_count(chain.anchorer.address)
    receipt = await chain.anchorer.transact(anchor.functions.anchor(os.urandom(32), 1, ZERO32))
    assert receipt["status"] == 1
    assert await chain.client.w3.eth.get_transaction_count(chain.anchorer.address) == before + 1


async def test_two_senders_of_one_key_interleaved_all_go_through(chain: Chain) -> None:
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    a, b = Signer(chain.client, ANVIL_DEV_KEYS[2]), Signer(chain.client, ANVIL_DEV_KEYS[2])
    roots = [os.urandom(32) for _ in range(6)]
    for i, root in enumerate(roots):
        signer = a if i % 2 == 0 else b
        receipt = await signer.transact(anchor.functions.anchor(root, 1, ZERO32))
        assert receipt["status"] == 1


def _nonce_collisions(caplog: pytest.LogCaptureFixture) -> int:
    return sum("nonce taken by another sender" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
async def test_senders_of_one_key_sharing_a_host_lock_never_take_each_others_nonce(
    chain: Chain, tmp_path: Path, caplog: pytest.LogCaptureFixture, many: bool
) -> None:
    """Two signers of one key (two ``serve --workers`` workers, each with its operator signer)
    sending at once: with the same lock file they take turns and no send is refused for a
    nonce the other took (without it, the retries are all that saves them, and many concurrent
    registrations through two workers outran those: 409 ``nonce too low``)."""
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    lock = tmp_path / "locks" / "nonce.lock"
    signers = [Signer(chain.client, ANVIL_DEV_KEYS[2], host_lock=lock) for _ in range(2)]

    async def send(i: int) -> None:
        fn = anchor.functions.anchor(os.urandom(32), 1, ZERO32)
        if many:
            (sent,) = await signers[i % 2].send_many([fn], gas=200_000)
            assert not isinstance(sent, Exception), sent
            receipt = await chain.client.wait_for_receipt(sent.tx_hash, timeout=30)
        else:
            receipt = await signers[i % 2].transact(fn)
        assert receipt["status"] == 1

    with caplog.at_level(logging.DEBUG, logger="chainsense.chain.client"):
        await asyncio.gather(*(send(i) for i in range(24)))
    assert _nonce_collisions(caplog) == 0
    assert lock.exists()


async def test_without_a_host_lock_senders_of_one_key_collide(
    chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the test above: the same load without the lock file does collide (so
    that test can see the difference)."""
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    signers = [Signer(chain.client, ANVIL_DEV_KEYS[2]) for _ in range(2)]

    async def send(i: int) -> None:
        with contextlib.suppress(Exception):  # a send whose retries all collided: also one
            await signers[i % 2].transact(anchor.functions.anchor(os.urandom(32), 1, ZERO32))

    with caplog.at_level(logging.DEBUG, logger="chainsense.chain.client"):
        await asyncio.gather(*(send(i) for i in range(24)))
    assert _nonce_collisions(caplog) > 0


async def test_wait_for_receipt_waits_for_confirmations(chain: Chain) -> None:
    anchor = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
    tx = await chain.anchorer.send(anchor.functions.anchor(os.urandom(32), 1, ZERO32))
    waiter = asyncio.create_task(chain.client.wait_for_receipt(tx, confirmations=3, timeout=20))
    await asyncio.sleep(0.2)
    assert not waiter.done(), "returned before 3 confirmations were mined"
    await chain.client.w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
    receipt = await asyncio.wait_for(waiter, 10)
    assert receipt["status"] == 1


async def test_wait_for_receipt_times_out_for_an_unknown_transaction(chain: Chain) -> None:
    with pytest.raises(ChainTimeoutError):
        await chain.client.wait_for_receipt("0x" + "ab" * 32, timeout=0.3)


async def test_unreachable_rpc_raises_chain_unavailable_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainUnavailableError) as info:
        await ChainClient.connect(url, retries=2, backoff=0.01, timeout=1)
    assert info.value.url == url
    assert url in str(info.value)
