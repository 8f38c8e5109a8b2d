"""A local view of the on-chain DeviceRegistry, kept current from its events.

Ingestion asks this view, not the chain, whether a key may sign: a dictionary lookup per reading.
The view reads every ``DeviceRegistered``, ``DeviceKeyRotated``, ``DeviceRevoked`` and
``DeviceMetadataUpdated`` event once at start, then polls for new ones every ``poll_interval``
seconds. A revocation made through ChainSense applies at once; one made directly on the chain
applies within ``poll_interval`` plus one RPC round trip (the documented and tested bound).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from web3.contract import AsyncContract

from chainsense.chain.client import ChainClient
from chainsense.errors import ChainError

__all__ = ["DeviceState", "RegistryView"]

log = logging.getLogger(__name__)

_EVENTS = ("DeviceRegistered", "DeviceKeyRotated", "DeviceRevoked", "DeviceMetadataUpdated")


@dataclass(frozen=True)
class DeviceState:
    """What the registry says about one signing key."""

    key: str
    device: str
    """The device identity (the first key it was registered with)."""
    owner: str
    metadata_hash: str
    status: str
    """``active``, ``revoked`` (the device was revoked) or ``rotated`` (replaced by a new key)."""
    registered_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


Listener = Callable[[Sequence[DeviceState]], Awaitable[None]]


class RegistryView:
    """Keys known to a DeviceRegistry, by address. Call :meth:`sync` once, then :meth:`run`."""

    def __init__(
        self,
        client: ChainClient,
        registry_address: str,
        *,
        from_block: int = 0,
        poll_interval: float = 1.0,
        on_change: Listener | None = None,
    ) -> None:
        self.client = client
        self.contract: AsyncContract = client.contract("DeviceRegistry", registry_address)
        self.poll_interval = poll_interval
        self._next_block = from_block
        self._keys: dict[str, DeviceState] = {}
        self._block_times: dict[int, datetime] = {}
        self._on_change = on_change
        self._topics = {str(self.contract.events[name].topic).lower(): name for name in _EVENTS}
        self._lock = asyncio.Lock()

    def get(self, key: str) -> DeviceState | None:
        """The state of a signing key (checksum address), or None if the registry never saw it."""
        return self._keys.get(key)

    def all(self) -> list[DeviceState]:
        return sorted(self._keys.values(), key=lambda s: s.key)

    @property
    def synced_to(self) -> int:
        """The last block whose events are applied."""
        return self._next_block - 1

    async def sync(self) -> list[DeviceState]:
        """Apply the events mined since the last sync; return the states that changed."""
        async with self._lock:
            head = await self.client.block_number()
            if head < self._next_block:
                return []
            logs = await self.client.rpc(
                lambda: self.client.w3.eth.get_logs(
                    {
                        "address": self.contract.address,
                        "fromBlock": self._next_block,
                        "toBlock": head,
                    }
                )
            )
            if not logs:
                self._next_block = head + 1
                return []
            # Work on a copy: the store mirror is written first, and only then does the view
            # say a key is active, so ingestion never sees a key the store does not know.
            keys = dict(self._keys)
            changed: dict[str, DeviceState] = {}
            for entry in logs:
                name = self._topics.get("0x" + bytes(entry["topics"][0]).hex())
                if name is None:
                    continue
                event = self.contract.events[name]().process_log(entry)
                when = await self._block_time(entry["blockNumber"])
                for state in self._apply(keys, name, event["args"], when):
                    keys[state.key] = state
                    changed[state.key] = state
            if changed and self._on_change is not None:
                await self._on_change(list(changed.values()))
            self._keys = keys
            self._next_block = head + 1
        return list(changed.values())

    async def run(self) -> None:
        """Poll for new events forever (cancel the task to stop). Errors are logged and retried."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.sync()
            except ChainError as exc:
                log.warning("registry sync failed, retrying: %s", exc)

    @staticmethod
    def _apply(
        keys: dict[str, DeviceState], name: str, args: Any, when: datetime
    ) -> list[DeviceState]:
        if name == "DeviceRegistered":
            return [
                DeviceState(
                    key=args["device"],
                    device=args["device"],
                    owner=args["owner"],
                    metadata_hash="0x" + bytes(args["metadataHash"]).hex(),
                    status="active",
                    registered_at=when,
                )
            ]
        if name == "DeviceRevoked":
            old = keys.get(args["key"])
            return [] if old is None else [replace(old, status="revoked", revoked_at=when)]
        if name == "DeviceKeyRotated":
            old = keys.get(args["oldKey"])
            if old is None:
                return []
            new = replace(old, key=args["newKey"], status="active", registered_at=when)
            return [replace(old, status="rotated", revoked_at=when), new]
        if name == "DeviceMetadataUpdated":
            digest = "0x" + bytes(args["metadataHash"]).hex()
            return [
                replace(s, metadata_hash=digest)
                for s in keys.values()
                if s.device == args["device"]
            ]
        return []

    async def _block_time(self, number: int) -> datetime:
        cached = self._block_times.get(number)
        if cached is None:
            block = await self.client.rpc(lambda: self.client.w3.eth.get_block(number))
            cached = datetime.fromtimestamp(block["timestamp"], UTC)
            if len(self._block_times) > 4096:
                self._block_times.clear()
            self._block_times[number] = cached
        return cached
