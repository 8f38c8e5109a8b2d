"""Start-up reconciliation of the store with the chain, after the registry's first sync.

The store mirrors the chain: the device registry (``devices``) and the anchors (``batches``). A
chain can lose what the store recorded: a dev chain restarted from an older state dump (a full
disk, a ``kill -9`` within the dump interval), a reset node. Then:

- **anchors above the chain's head**: detected and logged here; the anchorer re-checks them (as
  after a reorg) and anchors again the roots that are gone;
- **devices the chain does not know**: a key ``active`` in the store but absent from the
  registry would be shown active while its readings are refused as unknown. It is marked
  ``revoked`` in the mirror (its stored readings stay; new ones are refused, as the chain would),
  with a WARNING naming it. Registering it again on chain makes it ``active`` again through the
  normal sync.

Every finding is logged (``chain behind the database``, ``device not on chain``) and returned.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chainsense.chain.client import ChainClient
from chainsense.chain.registry import RegistryView
from chainsense.store import BatchState, DeviceRecord, DeviceStatus, Store

__all__ = ["Reconciliation", "reconcile"]

log = logging.getLogger(__name__)

_PAGE = 1000


@dataclass
class Reconciliation:
    """What start-up reconciliation found and did."""

    head: int
    anchors_above_head: int = 0
    """Anchored batches recorded in blocks the chain does not have (capped at one page)."""
    devices_missing: list[str] = field(default_factory=list)
    """Keys active in the store, unknown to the chain: now ``revoked`` in the mirror."""

    @property
    def chain_behind(self) -> bool:
        return self.anchors_above_head > 0 or bool(self.devices_missing)


async def reconcile(store: Store, registry: RegistryView, client: ChainClient) -> Reconciliation:
    """Compare the store with the chain (after ``registry.sync()``) and repair the mirror."""
    head = await client.block_number()
    found = Reconciliation(head=head)
    above = await store.batches.find(state=BatchState.ANCHORED, min_block=head + 1, limit=_PAGE)
    found.anchors_above_head = len(above)
    if above:
        log.warning(
            "chain behind the database: head block %d, %s anchored batches recorded above it "
            "(first: batch %d in block %s); the chain lost them (a dev chain restarted from an "
            "older state?): the anchorer re-checks them and anchors the lost roots again",
            head,
            f"{len(above)}+" if len(above) == _PAGE else len(above),
            above[0].id,
            above[0].block_number,
        )
    candidates = [d async for d in _active_devices(store) if registry.get(d.address) is None]
    if candidates:
        # another process may have mirrored a registration newer than our first sync
        await registry.sync()
        candidates = [d for d in candidates if registry.get(d.address) is None]
    now = datetime.now(UTC)
    for device in candidates:
        log.warning(
            "device not on chain: %s is active in the database but the DeviceRegistry does not "
            "know it (the chain lost its registration); marked revoked in the mirror, so its "
            "readings are refused as the chain would; register it again to restore it",
            device.address,
        )
        await store.devices.upsert(
            address=device.address,
            identity=device.identity,
            owner=device.owner,
            metadata_hash=device.metadata_hash,
            status=DeviceStatus.REVOKED,
            registered_at=device.registered_at,
            revoked_at=now,
            last_seq=device.last_seq,
        )
        found.devices_missing.append(device.address)
    if found.chain_behind:
        log.warning(
            "reconciled the database with the chain: %d anchors above head %d to re-check, %d "
            "devices marked revoked",
            found.anchors_above_head,
            head,
            len(found.devices_missing),
        )
    return found


async def _active_devices(store: Store) -> AsyncIterator[DeviceRecord]:
    after: str | None = None
    while True:
        page: list[DeviceRecord] = await store.devices.list(
            status=DeviceStatus.ACTIVE, after=after, limit=_PAGE
        )
        for device in page:
            yield device
        if len(page) < _PAGE:
            return
        after = page[-1].address
