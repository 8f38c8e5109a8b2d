"""Merkle batches: which readings a batch seals, its root, and where it is anchored.

The anchorer (``chainsense.provenance.anchorer``) is the only writer. The life of a batch::

    seal()  ->  sealed  --mark_anchored()-->  anchored
                  ^                              |
                  +------- unanchor() -----------+   (a reorg dropped the anchor)

:meth:`BatchRepository.seal` assigns the readings and records the root in one transaction, so a
reading belongs to at most one batch and a batch's membership never changes; its root can always
be rebuilt from its readings' struct hashes (ordered by reading id).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, func, insert, select, update
from sqlalchemy.engine import Connection

from chainsense.store.engine import Database
from chainsense.store.errors import StoreError
from chainsense.store.records import checksum_address, to_bytes, utc
from chainsense.store.schema import batches, readings

__all__ = ["Backlog", "BatchRecord", "BatchRepository", "BatchState", "PendingReading"]

_CHUNK = 500


class BatchState(enum.StrEnum):
    SEALED = "sealed"
    ANCHORED = "anchored"


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    root: bytes
    reading_count: int
    state: BatchState
    chain_id: int
    contract: str
    """The ReadingAnchor address."""
    sealed_at: datetime
    tx_hash: bytes | None
    block_number: int | None
    block_hash: bytes | None
    block_time: int | None
    """Block timestamp, seconds since the Unix epoch."""
    anchored_at: datetime | None
    """Server time when the anchor reached its confirmations."""
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PendingReading:
    """A stored reading that no batch seals yet."""

    id: int
    struct_hash: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    """How far anchoring lags behind ingestion."""

    unbatched_readings: int
    sealed_batches: int
    sealed_readings: int
    oldest_unanchored_at: datetime | None
    """When the oldest reading not yet anchored was stored."""


@dataclass(frozen=True)
class BatchTotals:
    """Every batch the database holds, and the failure of the oldest one still waiting."""

    sealed: int
    """All batches (sealed at some point, whatever their state now)."""
    anchored: int
    failed_attempts: int
    """Failed anchoring attempts of the oldest waiting batch that has failed (0: none)."""
    last_error: str | None


_COLUMNS = (
    batches.c.id,
    batches.c.root,
    batches.c.reading_count,
    batches.c.state,
    batches.c.chain_id,
    batches.c.contract,
    batches.c.sealed_at,
    batches.c.tx_hash,
    batches.c.block_number,
    batches.c.block_hash,
    batches.c.block_time,
    batches.c.anchored_at,
    batches.c.attempts,
    batches.c.last_error,
)


def _record(row: Any) -> BatchRecord:
    m = row._mapping

    def opt_bytes(key: str) -> bytes | None:
        return None if m[key] is None else bytes(m[key])

    return BatchRecord(
        id=int(m["id"]),
        root=bytes(m["root"]),
        reading_count=int(m["reading_count"]),
        state=BatchState(m["state"]),
        chain_id=int(m["chain_id"]),
        contract=str(m["contract"]),
        sealed_at=m["sealed_at"],
        tx_hash=opt_bytes("tx_hash"),
        block_number=m["block_number"],
        block_hash=opt_bytes("block_hash"),
        block_time=m["block_time"],
        anchored_at=m["anchored_at"],
        attempts=int(m["attempts"]),
        last_error=m["last_error"],
    )


class BatchRepository:
    """Batches in one store. Obtain it as ``store.batches``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- what is waiting -------------------------------------------------------------------

    async def unbatched(self, *, limit: int) -> list[PendingReading]:
        """The oldest readings no batch seals yet, by id."""
        stmt = (
            select(readings.c.id, readings.c.struct_hash, readings.c.received_at)
            .where(readings.c.batch_id.is_(None))
            .order_by(readings.c.id)
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [PendingReading(int(r[0]), bytes(r[1]), r[2]) for r in rows]

    async def waiting(self, *, limit: int) -> tuple[int, datetime | None]:
        """How many readings wait for a batch (counting at most ``limit``) and when the oldest of
        them was stored: a cheap check before :meth:`unbatched`."""
        oldest = (
            select(readings.c.received_at)
            .where(readings.c.batch_id.is_(None))
            .order_by(readings.c.id)
            .limit(limit)
            .subquery()
        )
        async with self._db.read() as conn:
            count, first = (
                await conn.execute(select(func.count(), func.min(oldest.c.received_at)))
            ).one()
        return int(count), None if first is None else utc(first, "received_at")

    async def totals(self) -> BatchTotals:
        """Batch counts and the anchorer's latest failure as the database records them: the
        same answer from every process, whichever runs the anchorer."""
        counts = select(batches.c.state, func.count()).group_by(batches.c.state)
        failing = (
            select(batches.c.attempts, batches.c.last_error)
            .where(batches.c.state == BatchState.SEALED.value, batches.c.last_error.is_not(None))
            .order_by(batches.c.id)
            .limit(1)
        )
        async with self._db.read() as conn:
            by_state = {str(state): int(n) for state, n in (await conn.execute(counts)).all()}
            failed = (await conn.execute(failing)).first()
        return BatchTotals(
            sealed=sum(by_state.values()),
            anchored=by_state.get(BatchState.ANCHORED.value, 0),
            failed_attempts=int(failed[0]) if failed is not None else 0,
            last_error=None if failed is None else str(failed[1]),
        )

    async def backlog(self) -> Backlog:
        unbatched = (
            select(func.count(), func.min(readings.c.received_at))
            .select_from(readings)
            .where(readings.c.batch_id.is_(None))
        )
        sealed = select(func.count(), func.coalesce(func.sum(batches.c.reading_count), 0)).where(
            batches.c.state == BatchState.SEALED.value
        )
        oldest_sealed = (
            select(func.min(readings.c.received_at))
            .select_from(readings.join(batches, readings.c.batch_id == batches.c.id))
            .where(batches.c.state == BatchState.SEALED.value)
        )
        async with self._db.read() as conn:
            n_unbatched, oldest_unbatched = (await conn.execute(unbatched)).one()
            n_sealed, n_sealed_readings = (await conn.execute(sealed)).one()
            oldest_in_sealed = (await conn.execute(oldest_sealed)).scalar_one()
        times = [t for t in (oldest_unbatched, oldest_in_sealed) if t is not None]
        return Backlog(
            unbatched_readings=int(n_unbatched),
            sealed_batches=int(n_sealed),
            sealed_readings=int(n_sealed_readings),
            oldest_unanchored_at=utc(min(times), "oldest") if times else None,
        )

    # --- sealing ---------------------------------------------------------------------------

    async def seal(
        self,
        reading_ids: Sequence[int],
        *,
        root: bytes,
        chain_id: int,
        contract: str,
        sealed_at: datetime,
    ) -> BatchRecord:
        """Record a batch of these readings with this root, atomically.

        Raises StoreError (and changes nothing) if any of the readings is already in a batch or
        does not exist: the caller computed the root over a stale view.
        """
        if not reading_ids:
            raise ValueError("a batch needs at least one reading")
        values = {
            "root": to_bytes(root, 32, "root"),
            "reading_count": len(reading_ids),
            "state": BatchState.SEALED.value,
            "chain_id": chain_id,
            "contract": checksum_address(contract),
            "sealed_at": utc(sealed_at, "sealed_at"),
        }
        row = await self._db.run_write(_seal_transaction, values, list(reading_ids))
        return _record(row)

    # --- reading back ----------------------------------------------------------------------

    async def get(self, batch_id: int) -> BatchRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(batches.c.id == batch_id))).first()
        return None if row is None else _record(row)

    async def find(
        self,
        *,
        state: BatchState | None = None,
        after_id: int | None = None,
        min_block: int | None = None,
        block_time_since: int | None = None,
        block_time_until: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[BatchRecord]:
        """Batches by id, oldest first (``newest_first``: newest first, ``after_id`` then pages
        to lower ids); filter by state, page with ``after_id``; ``min_block`` keeps anchored
        batches at or above that block; ``block_time_since`` (inclusive) and
        ``block_time_until`` (exclusive) keep anchored batches whose anchor block's time, in
        seconds, is in that range."""
        order = batches.c.id.desc() if newest_first else batches.c.id
        stmt = select(*_COLUMNS).order_by(order).limit(limit)
        if state is not None:
            stmt = stmt.where(batches.c.state == state.value)
        if after_id is not None:
            stmt = stmt.where(batches.c.id < after_id if newest_first else batches.c.id > after_id)
        if min_block is not None:
            stmt = stmt.where(batches.c.block_number >= min_block)
        if block_time_since is not None:
            stmt = stmt.where(batches.c.block_time >= block_time_since)
        if block_time_until is not None:
            stmt = stmt.where(batches.c.block_time < block_time_until)
        async with self._db.read() as conn:
            return [_record(row) for row in await conn.execute(stmt)]

    async def struct_hashes(self, batch_id: int) -> list[tuple[int, bytes]]:
        """``(reading id, struct hash)`` of every reading the batch seals, by id."""
        stmt = (
            select(readings.c.id, readings.c.struct_hash)
            .where(readings.c.batch_id == batch_id)
            .order_by(readings.c.id)
        )
        async with self._db.read() as conn:
            return [(int(r[0]), bytes(r[1])) for r in await conn.execute(stmt)]

    async def schema_ids(self, batch_id: int) -> list[bytes]:
        """The distinct schema ids of the batch's readings, in byte order."""
        stmt = (
            select(readings.c.schema)
            .where(readings.c.batch_id == batch_id)
            .distinct()
            .order_by(readings.c.schema)
        )
        async with self._db.read() as conn:
            return [bytes(r[0]) for r in await conn.execute(stmt)]

    # --- anchoring -------------------------------------------------------------------------

    async def mark_anchored(
        self,
        batch_id: int,
        *,
        chain_id: int,
        contract: str,
        tx_hash: bytes,
        block_number: int,
        block_hash: bytes,
        block_time: int,
        anchored_at: datetime,
    ) -> None:
        await self._update(
            batch_id,
            state=BatchState.ANCHORED.value,
            chain_id=chain_id,
            contract=checksum_address(contract),
            tx_hash=to_bytes(tx_hash, 32, "tx_hash"),
            block_number=block_number,
            block_hash=to_bytes(block_hash, 32, "block_hash"),
            block_time=block_time,
            anchored_at=utc(anchored_at, "anchored_at"),
            last_error=None,
        )

    async def unanchor(self, batch_id: int, *, reason: str) -> None:
        """Send an anchored batch back to ``sealed`` (its anchor is no longer on the chain)."""
        await self._update(
            batch_id,
            state=BatchState.SEALED.value,
            tx_hash=None,
            block_number=None,
            block_hash=None,
            block_time=None,
            anchored_at=None,
            last_error=reason[:500],
        )

    async def record_failure(self, batch_id: int, error: str) -> None:
        """Count a failed anchoring attempt and keep its reason."""
        stmt = (
            update(batches)
            .where(batches.c.id == batch_id)
            .values(attempts=batches.c.attempts + 1, last_error=error[:500])
        )
        await self._db.run_write(_execute, stmt)

    async def _update(self, batch_id: int, **values: object) -> None:
        stmt = update(batches).where(batches.c.id == batch_id).values(**values)
        if await self._db.run_write(_execute, stmt) != 1:
            raise StoreError(f"no batch {batch_id}")


def _execute(conn: Connection, stmt: Executable) -> int:
    """One statement in its own write transaction; the rows it changed."""
    return int(conn.execute(stmt).rowcount)


def _seal_transaction(conn: Connection, values: dict[str, Any], ids: list[int]) -> Any:
    """The body of :meth:`BatchRepository.seal`'s write transaction: the new batch's row."""
    batch_id = conn.execute(insert(batches).values(**values).returning(batches.c.id)).scalar_one()
    moved = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        result = conn.execute(
            update(readings)
            .where(readings.c.id.in_(chunk), readings.c.batch_id.is_(None))
            .values(batch_id=batch_id)
        )
        moved += result.rowcount
    if moved != len(ids):
        raise StoreError(
            f"cannot seal batch: {len(ids) - moved} of {len(ids)} readings are already "
            "sealed or missing"
        )
    return conn.execute(select(*_COLUMNS).where(batches.c.id == batch_id)).one()
