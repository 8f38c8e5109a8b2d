"""The local mirror of the on-chain DeviceRegistry, one row per signing key.

The registry sync writes it (:meth:`DeviceRepository.upsert`); ingestion reads ``last_seq``
through :meth:`ReadingRepository.insert_batch <chainsense.store.ReadingRepository.insert_batch>`,
which is also the only writer that moves ``last_seq``. An upsert never lowers it. ``updated_at``
is when the registry fields last changed here, not when a reading last arrived.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from chainsense.store.engine import Database
from chainsense.store.readings import MAX_QUERY_LIMIT
from chainsense.store.records import (
    INT64_MAX,
    DeviceRecord,
    DeviceStatus,
    checksum_address,
    to_bytes,
    utc,
)
from chainsense.store.schema import devices

__all__ = ["MAX_LABEL", "DeviceRepository"]

_COLUMNS = (
    devices.c.address,
    devices.c.identity,
    devices.c.owner,
    devices.c.metadata_hash,
    devices.c.status,
    devices.c.registered_at,
    devices.c.revoked_at,
    devices.c.last_seq,
    devices.c.label,
)

MAX_LABEL = 100


class DeviceRepository:
    """Devices in one store. Obtain it as ``store.devices``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(
        self,
        *,
        address: str,
        owner: str,
        metadata_hash: bytes | str,
        status: DeviceStatus | str,
        registered_at: datetime,
        identity: str | None = None,
        revoked_at: datetime | None = None,
        last_seq: int = 0,
    ) -> None:
        """Insert or update one signing key; ``last_seq`` only ever moves up.

        ``identity`` defaults to ``address`` (a key that was never rotated); ``metadata_hash``
        is 32 bytes or 0x-hex; times must be timezone-aware. ValueError on malformed input.
        """
        params = _params(
            address=address,
            identity=identity if identity is not None else address,
            owner=owner,
            metadata_hash=metadata_hash,
            status=status,
            registered_at=registered_at,
            revoked_at=revoked_at,
            last_seq=last_seq,
        )
        await self._upsert([params])

    async def upsert_many(self, records: Iterable[DeviceRecord]) -> None:
        """:meth:`upsert` for many keys in one transaction (the registry's initial sync)."""
        params = []
        for i, record in enumerate(records):
            if not isinstance(record, DeviceRecord):
                raise ValueError(
                    f"records[{i}]: expected a DeviceRecord, got {type(record).__name__}"
                )
            params.append(
                _params(
                    address=record.address,
                    identity=record.identity,
                    owner=record.owner,
                    metadata_hash=record.metadata_hash,
                    status=record.status,
                    registered_at=record.registered_at,
                    revoked_at=record.revoked_at,
                    last_seq=record.last_seq,
                )
            )
        await self._upsert(params)

    async def _upsert(self, params: builtins.list[dict[str, Any]]) -> None:
        if not params:
            return
        # The last record of an address wins; rows are written in address order, the order
        # insert_batch locks them in, so the two never deadlock on PostgreSQL.
        params = [p for _, p in sorted({p["address"]: p for p in params}.items())]
        now = datetime.now(UTC)
        for p in params:
            p["updated_at"] = now
        dialect_insert = sqlite.insert if self._db.is_sqlite else postgresql.insert
        ins = dialect_insert(devices)
        excluded = ins.excluded
        stmt = ins.on_conflict_do_update(
            index_elements=[devices.c.address],
            set_={
                "identity": excluded.identity,
                "owner": excluded.owner,
                "metadata_hash": excluded.metadata_hash,
                "status": excluded.status,
                "registered_at": excluded.registered_at,
                "revoked_at": excluded.revoked_at,
                "last_seq": case(
                    (excluded.last_seq > devices.c.last_seq, excluded.last_seq),
                    else_=devices.c.last_seq,
                ),
                "updated_at": excluded.updated_at,
            },
        )
        async with self._db.write() as conn:
            await conn.execute(stmt, params)

    async def get(self, address: str) -> DeviceRecord | None:
        """The key at ``address`` (any case; ValueError if malformed), or None."""
        stmt = select(*_COLUMNS).where(devices.c.address == checksum_address(address))
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _record(row)

    async def keys_of(self, identity: str) -> builtins.list[DeviceRecord]:
        """Every key of the device ``identity`` (more than one after key rotations)."""
        stmt = (
            select(*_COLUMNS)
            .where(devices.c.identity == checksum_address(identity))
            .order_by(devices.c.address)
        )
        async with self._db.read() as conn:
            return [_record(row) for row in await conn.execute(stmt)]

    async def set_label(self, address: str, label: str | None) -> bool:
        """Name the device at ``address`` (None or blank: no label). True if it exists.

        The label is the operator's own, kept here only (the registry sync never changes it);
        ValueError if it is longer than 100 characters or holds control characters.
        """
        if label is not None:
            label = label.strip() or None
        if label is not None and (
            len(label) > MAX_LABEL or any(ord(c) < 32 or ord(c) == 127 for c in label)
        ):
            raise ValueError(f"label: expected 1..{MAX_LABEL} printable characters")
        stmt = (
            update(devices)
            .where(devices.c.address == checksum_address(address))
            .values(label=label)
        )
        async with self._db.write() as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def list(
        self,
        *,
        status: DeviceStatus | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> builtins.list[DeviceRecord]:
        """Keys ordered by address; page on with ``after`` = the last address of the previous
        page. ``status`` filters on one status; ``limit`` is 1..10 000."""
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit: expected 1..{MAX_QUERY_LIMIT}, got {limit}")
        where: builtins.list[ColumnElement[bool]] = []
        if status is not None:
            where.append(devices.c.status == DeviceStatus(status).value)
        if after is not None:
            where.append(devices.c.address > checksum_address(after))
        stmt = select(*_COLUMNS).where(*where).order_by(devices.c.address).limit(limit)
        async with self._db.read() as conn:
            return [_record(row) for row in await conn.execute(stmt)]


def _params(
    *,
    address: str,
    identity: str,
    owner: str,
    metadata_hash: bytes | str,
    status: DeviceStatus | str,
    registered_at: datetime,
    revoked_at: datetime | None,
    last_seq: int,
) -> dict[str, Any]:
    if type(last_seq) is not int or not 0 <= last_seq <= INT64_MAX:
        raise ValueError(f"last_seq: expected an integer in 0..2^63-1, got {last_seq!r}")
    try:
        checked_status = DeviceStatus(status)
    except ValueError:
        allowed = ", ".join(s.value for s in DeviceStatus)
        raise ValueError(f"status: expected one of {allowed}, got {status!r}") from None
    return {
        "address": _address("address", address),
        "identity": _address("identity", identity),
        "owner": _address("owner", owner),
        "metadata_hash": to_bytes(metadata_hash, 32, "metadata_hash"),
        "status": checked_status.value,
        "registered_at": utc(registered_at, "registered_at"),
        "revoked_at": None if revoked_at is None else utc(revoked_at, "revoked_at"),
        "last_seq": last_seq,
    }


def _address(field: str, value: str) -> str:
    try:
        return checksum_address(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _record(row: Sequence[Any]) -> DeviceRecord:
    address, identity, owner, metadata_hash, status, registered_at, revoked_at, last_seq, label = (
        row
    )
    return DeviceRecord(
        address=address,
        identity=identity,
        owner=owner,
        metadata_hash="0x" + bytes(metadata_hash).hex(),
        status=DeviceStatus(status),
        registered_at=registered_at,
        revoked_at=revoked_at,
        last_seq=last_seq,
        label=label,
    )
