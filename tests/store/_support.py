"""Helpers shared by the store tests (imported relatively, not via conftest)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from eth_utils.address import to_checksum_address

from chainsense.store import NewReading, Store

T0 = 1_763_700_000_000  # a device clock reading, ms
SCHEMA = hashlib.sha256(b"cold-chain/v1").digest()
REGISTERED = datetime(2025, 11, 21, 12, 0, tzinfo=UTC)


def address(n: int) -> str:
    """A deterministic checksum address per ``n``."""
    return to_checksum_address("0x" + hashlib.sha256(b"device%d" % n).hexdigest()[:40])


def reading(
    device: str,
    seq: int,
    *,
    variant: int = 0,
    timestamp: int | None = None,
    values: tuple[int, ...] | None = None,
) -> NewReading:
    """A reading whose bytes depend only on (device, seq, variant): equal inputs, equal reading."""
    tag = f"{device}/{seq}/{variant}".encode()
    return NewReading(
        device=device,
        seq=seq,
        timestamp=T0 + seq * 1000 if timestamp is None else timestamp,
        schema=SCHEMA,
        values=(seq, -seq, variant) if values is None else values,
        signature=hashlib.sha512(b"sig" + tag).digest() + b"\x1b",
        struct_hash=hashlib.sha256(b"hash" + tag).digest(),
    )


async def register(store: Store, *devices: str, status: str = "active") -> None:
    for device in devices:
        await store.devices.upsert(
            address=device,
            owner=address(0),
            metadata_hash=b"\x00" * 32,
            status=status,
            registered_at=REGISTERED,
        )


async def seqs_in_id_order(store: Store, device: str) -> list[int]:
    """Every stored seq of ``device``, in id (storage) order, paging through the whole table."""
    seqs: list[int] = []
    after: int | None = None
    while page := await store.readings.query(device=device, after_id=after, limit=1000):
        seqs.extend(r.seq for r in page)
        after = page[-1].id
    return seqs
