"""Devices: the registry mirror's upsert, lookup and cursor listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from chainsense.store import DeviceRecord, DeviceStatus, Store

from ._support import REGISTERED, address

pytestmark = pytest.mark.timeout(60)

KEY = address(1)
OWNER = address(0)
HASH = "0x" + "ab" * 32


async def _upsert(store: Store, key: str, **changes: object) -> None:
    fields: dict[str, object] = {
        "address": key,
        "owner": OWNER,
        "metadata_hash": HASH,
        "status": "active",
        "registered_at": REGISTERED,
    }
    fields.update(changes)
    await store.devices.upsert(**fields)  # type: ignore[arg-type]


async def test_upsert_then_get_round_trips(store: Store) -> None:
    cest = timezone(timedelta(hours=2))
    await _upsert(store, KEY.lower(), registered_at=REGISTERED.astimezone(cest))
    record = await store.devices.get(KEY.lower())
    assert record == DeviceRecord(
        address=KEY,
        identity=KEY,
        owner=OWNER,
        metadata_hash=HASH,
        status=DeviceStatus.ACTIVE,
        registered_at=REGISTERED,
        revoked_at=None,
        last_seq=0,
    )
    assert record.registered_at.tzinfo == UTC
    assert record.status == "active"
    assert await store.devices.get(address(2)) is None


async def test_upsert_updates_registry_fields(store: Store) -> None:
    await _upsert(store, KEY)
    revoked = datetime(2025, 12, 1, tzinfo=UTC)
    await _upsert(
        store, KEY, status=DeviceStatus.REVOKED, revoked_at=revoked, metadata_hash=b"\x01" * 32
    )
    record = await store.devices.get(KEY)
    assert record is not None
    assert record.status is DeviceStatus.REVOKED
    assert record.revoked_at == revoked
    assert record.metadata_hash == "0x" + "01" * 32


async def test_a_rotated_key_keeps_its_device_identity(store: Store) -> None:
    old, new = address(1), address(2)
    await _upsert(store, old, status="rotated")
    await _upsert(store, new, identity=old)
    rotated, current = await store.devices.get(old), await store.devices.get(new)
    assert rotated is not None
    assert current is not None
    assert (rotated.status, rotated.identity) == (DeviceStatus.ROTATED, old)
    assert (current.status, current.identity) == (DeviceStatus.ACTIVE, old)


async def test_list_orders_by_address_filters_by_status_and_pages(store: Store) -> None:
    keys = [address(i) for i in range(1, 24)]
    await store.devices.upsert_many(
        DeviceRecord(
            address=key,
            identity=key,
            owner=OWNER,
            metadata_hash=HASH,
            status=DeviceStatus.REVOKED if i % 4 == 0 else DeviceStatus.ACTIVE,
            registered_at=REGISTERED,
            revoked_at=REGISTERED if i % 4 == 0 else None,
            last_seq=0,
        )
        for i, key in enumerate(keys)
    )
    everything = await store.devices.list(limit=1000)
    assert sorted(r.address for r in everything) == sorted(keys)
    assert [r.address for r in everything] == sorted(r.address for r in everything)
    pages, after = [], None
    while page := await store.devices.list(after=after, limit=5):
        pages.append(page)
        after = page[-1].address
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [r for p in pages for r in p] == everything
    revoked = await store.devices.list(status="revoked")
    assert {r.address for r in revoked} == {k for i, k in enumerate(keys) if i % 4 == 0}
    assert all(r.revoked_at == REGISTERED for r in revoked)
    assert await store.devices.list(status=DeviceStatus.ROTATED) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"address": "0x12"}, "address"),
        ({"owner": "not an address"}, "owner"),
        ({"identity": "0x" + "g" * 40}, "identity"),
        ({"status": "paused"}, "status"),
        ({"metadata_hash": b"\x00" * 31}, "metadata_hash"),
        ({"metadata_hash": "ab" * 32}, "metadata_hash"),
        ({"registered_at": datetime(2025, 1, 1)}, "registered_at"),  # naive: refused
        ({"revoked_at": datetime(2025, 1, 1)}, "revoked_at"),  # naive: refused
        ({"last_seq": 2**63}, "last_seq"),
        ({"last_seq": -1}, "last_seq"),
    ],
)
async def test_malformed_upserts_raise(
    store: Store, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await _upsert(store, KEY, **change)
    assert await store.devices.list() == []


async def test_list_arguments_are_checked(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.devices.list(limit=0)
    with pytest.raises(ValueError, match="sleeping"):
        await store.devices.list(status="sleeping")
    with pytest.raises(ValueError, match="not an address"):
        await store.devices.list(after="0xnope")


async def test_upsert_many_keeps_the_last_record_of_an_address(store: Store) -> None:
    def record(key: str, status: DeviceStatus) -> DeviceRecord:
        return DeviceRecord(key, key, OWNER, HASH, status, REGISTERED, None, 0)

    await store.devices.upsert_many(
        [
            record(address(2), DeviceStatus.ACTIVE),
            record(address(1), DeviceStatus.ACTIVE),
            record(address(2), DeviceStatus.ROTATED),
        ]
    )
    assert [(r.address, r.status) for r in await store.devices.list()] == sorted(
        [(address(1), DeviceStatus.ACTIVE), (address(2), DeviceStatus.ROTATED)]
    )
