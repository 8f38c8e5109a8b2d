"""Start-up reconciliation against a real Anvil that loses recent history (``evm_revert`` to a
snapshot, as a dev chain restarted from an older state dump does) and a real SQLite store: a
device whose registration was lost is no longer ``active``, and anchors above the head are
detected; both are logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chainsense.chain.reconcile import reconcile
from chainsense.chain.registry import RegistryView
from chainsense.identity import DeviceKey
from chainsense.platform import registry_mirror
from chainsense.provenance.anchorer import Anchorer
from chainsense.store import BatchState, DeviceStatus, Store
from tests.chain.conftest import Chain
from tests.store._support import reading

pytestmark = pytest.mark.chain


async def _register(chain: Chain, key: DeviceKey) -> None:
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
    await chain.operator.transact(
        registry.functions.register(key.address, chain.operator.address, bytes(32))
    )


def _view(chain: Chain, store: Store) -> RegistryView:
    deployed = chain.deployment.contracts["DeviceRegistry"]
    return RegistryView(
        chain.client,
        deployed.address,
        from_block=deployed.block_number,
        on_change=registry_mirror(store),
    )


async def test_a_chain_that_lost_a_registration_and_an_anchor_is_reconciled(
    chain: Chain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w3 = chain.client.w3
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'chainsense.db'}")
    kept, lost = DeviceKey.generate(), DeviceKey.generate()
    snapshot = None
    try:
        await _register(chain, kept)
        snapshot = (await w3.provider.make_request("evm_snapshot", []))["result"]
        await _register(chain, lost)
        await _view(chain, store).sync()  # the store mirrors both
        assert (await store.devices.get(lost.address)).status is DeviceStatus.ACTIVE  # type: ignore[union-attr]
        await store.readings.insert_batch([reading(kept.address, 1)])
        anchorer = Anchorer(
            store=store,
            client=chain.client,
            signer=chain.anchorer,
            contract=chain.deployment.address("ReadingAnchor"),
        )
        await anchorer.seal_now()
        (anchored,) = await anchorer.anchor_sealed()

        # the chain loses everything after the snapshot: the second registration, the anchor
        await w3.provider.make_request("evm_revert", [snapshot])
        for signer in (chain.operator, chain.anchorer):
            await signer.reset_nonce()  # their later transactions are gone
        view = _view(chain, store)  # a fresh process's view
        await view.sync()
        with caplog.at_level(logging.WARNING, logger="chainsense.chain.reconcile"):
            found = await reconcile(store, view, chain.client)
        assert found.devices_missing == [lost.address]
        assert found.anchors_above_head == 1
        assert found.head < (anchored.block_number or 0)
        lost_now = await store.devices.get(lost.address)
        assert lost_now is not None
        assert lost_now.status is DeviceStatus.REVOKED
        kept_now = await store.devices.get(kept.address)
        assert kept_now is not None
        assert kept_now.status is DeviceStatus.ACTIVE
        text = caplog.text
        assert f"device not on chain: {lost.address}" in text
        assert "chain behind the database" in text
        # the anchorer's re-check sends the lost anchor back to be anchored again
        assert await anchorer.check_anchors() == [anchored.id]
        back = await store.batches.get(anchored.id)
        assert back is not None
        assert back.state is BatchState.SEALED
        # a second start finds nothing more to do
        assert not (await reconcile(store, view, chain.client)).devices_missing
    finally:
        await store.close()
