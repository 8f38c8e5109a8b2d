"""Signed readings: batched, durable, replay-safe inserts and cursor queries.

How :meth:`ReadingRepository.insert_batch` keeps each device's ``seq`` strictly increasing when
several tasks or processes write at once: the whole batch is one write transaction that first
locks the rows of the devices it touches (``SELECT ... FOR UPDATE`` in address order on
PostgreSQL, so two batches never deadlock; ``BEGIN IMMEDIATE`` on SQLite, which takes the
database write lock). Under that lock ``devices.last_seq`` is exact, so one query fetches every
possible collision (only a seq at or below ``last_seq`` can collide), the outcome of each row is
decided in Python, the new rows go in as one bulk ``INSERT`` (multi-row ``INSERT ... RETURNING
id`` on PostgreSQL; on SQLite, whose write lock makes the next ids known, with explicit ids), and
``last_seq`` moves up, all before ``COMMIT``. The ``UNIQUE (device, seq)`` constraint backs this
up: if it ever fired, the batch would fail whole and nothing would be acknowledged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Dialect,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from chainsense.store.engine import Database
from chainsense.store.records import (
    INT64_MAX,
    INT64_MIN,
    InsertResult,
    NewReading,
    Outcome,
    StoredReading,
    checksum_address,
)
from chainsense.store.schema import devices, readings

__all__ = ["MAX_QUERY_LIMIT", "ReadingRepository", "SeriesBucket"]

MAX_QUERY_LIMIT = 10_000
_CHUNK = 2_000  # items per IN list: far below every driver's bound-parameter limit

T = TypeVar("T")
# A validated row: device (checksummed), seq, timestamp, schema, values, signature, struct hash.
_Checked = tuple[str, int, int, bytes, tuple[int, ...], bytes, bytes]

_COLUMNS = (
    readings.c.id,
    readings.c.device,
    readings.c.seq,
    readings.c.timestamp,
    readings.c.schema,
    readings.c["values"],
    readings.c.signature,
    readings.c.struct_hash,
    readings.c.received_at,
    readings.c.batch_id,
)

_INSERT_RETURNING = insert(readings).returning(readings.c.id, sort_by_parameter_order=True)
# SQLite cannot return the ids of a multi-row INSERT in parameter order (SQLAlchemy would fall
# back to one statement per row), but under its write lock the next ids are known: past both
# the largest id ever used (AUTOINCREMENT's counter) and the largest id present.
_SQLITE_NEXT_ID = text(
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'readings'), 0), "
    "coalesce((SELECT max(id) FROM readings), 0)) + 1"
)
_SET_LAST_SEQ = (
    update(devices)
    .where(devices.c.address == bindparam("b_address"))
    .values(last_seq=bindparam("b_last_seq"))
)


class ReadingRepository:
    """Readings in one store. Obtain it as ``store.readings``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_batch(self, rows: Sequence[NewReading]) -> list[InsertResult]:
        """Store what can be stored of ``rows`` in one transaction; one result per row, in order.

        Returns only after COMMIT: every STORED row is durable by then. Rows of one device must
        come in increasing seq order to all be stored; a row whose seq is not above an earlier
        row of the same device (in the database or earlier in this batch) is DUPLICATE,
        CONFLICT or STALE. Raises ValueError, before touching the database, if any row is
        malformed (seq or timestamp outside 0..2^63-1, a value outside int64, wrong byte
        lengths, a malformed address).
        """
        if not rows:
            return []
        checked = [_check(i, row) for i, row in enumerate(rows)]
        plan, new_ids = await self._db.run_write(
            _insert_transaction, checked, datetime.now(UTC), self._db.is_sqlite
        )
        return [
            InsertResult(outcome, new_ids[k] if k is not None else reading_id)
            for outcome, reading_id, k in plan
        ]

    def writes_in_thread(self) -> bool:
        """Whether :meth:`insert_batch_in_writer` may be used (SQLite)."""
        return self._db.is_sqlite

    def submit_to_writer(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the store's writer thread (SQLite); see Database.submit_to_writer."""
        self._db.submit_to_writer(job)

    def insert_batch_in_writer(self, rows: Sequence[NewReading]) -> list[InsertResult]:
        """:meth:`insert_batch`, called from a job of :meth:`submit_to_writer` (SQLite)."""
        if not rows:
            return []
        checked = [_check(i, row) for i, row in enumerate(rows)]
        plan, new_ids = self._db.transact_in_writer(
            _insert_transaction, checked, datetime.now(UTC), True
        )
        return [
            InsertResult(outcome, new_ids[k] if k is not None else reading_id)
            for outcome, reading_id, k in plan
        ]

    async def get(self, reading_id: int) -> StoredReading | None:
        """The reading with that id, or None."""
        async with self._db.read() as conn:
            result = await conn.execute(select(*_COLUMNS).where(readings.c.id == reading_id))
            row = result.first()
        return None if row is None else _stored(row)

    async def query(
        self,
        *,
        device: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
        batch_id: int | None = None,
    ) -> list[StoredReading]:
        """Readings ordered by id, oldest first (``newest_first``: newest first).

        ``batch_id`` keeps the readings that batch seals. ``since_ms`` is inclusive and
        ``until_ms`` exclusive (device timestamps, in ms); page on with ``after_id`` = the last
        id of the previous page (with ``newest_first``, the next page holds the ids below it).
        ``limit`` is 1..10 000.
        """
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit: expected 1..{MAX_QUERY_LIMIT}, got {limit}")
        where: list[ColumnElement[bool]] = []
        if device is not None:
            where.append(readings.c.device == checksum_address(device))
        if since_ms is not None:
            where.append(readings.c.timestamp >= _int64("since_ms", since_ms))
        if until_ms is not None:
            where.append(readings.c.timestamp < _int64("until_ms", until_ms))
        if batch_id is not None:
            where.append(readings.c.batch_id == _int64("batch_id", batch_id))
        if after_id is not None:
            cursor = _int64("after_id", after_id)
            where.append(readings.c.id < cursor if newest_first else readings.c.id > cursor)
        order = readings.c.id.desc() if newest_first else readings.c.id
        stmt = select(*_COLUMNS).where(*where).order_by(order).limit(limit)
        async with self._db.read() as conn:
            result = await conn.execute(stmt)
            return [_stored(row) for row in result]

    async def series(
        self,
        *,
        device: str,
        schema: bytes,
        index: int,
        since_ms: int,
        until_ms: int,
        buckets: int,
    ) -> list[SeriesBucket]:
        """One value of a device's readings, aggregated in the database into at most
        ``buckets`` equal time buckets over ``[since_ms, until_ms)``: per non-empty bucket its
        start (ms), count, min, max and mean of the raw fixed-point value at ``index``.

        The database does the work (one indexed range scan, one GROUP BY), so the rows never
        travel: a year of minute readings comes back as a few hundred buckets.
        """
        if not 1 <= buckets <= MAX_QUERY_LIMIT:
            raise ValueError(f"buckets: expected 1..{MAX_QUERY_LIMIT}, got {buckets}")
        since, until = _int64("since_ms", since_ms), _int64("until_ms", until_ms)
        if until <= since:
            raise ValueError("until_ms must be after since_ms")
        if not 0 <= index < 256:
            raise ValueError(f"index: expected 0..255, got {index}")
        width = max(1, -(-(until - since) // buckets))  # ceil: at most `buckets` buckets
        if self._db.is_sqlite:
            value = f"json_extract(\"values\", '$[{index}]')"
        else:
            value = f'"values"[{index + 1}]'
        sql = text(
            f"SELECT (timestamp - :since) / :width AS b, count(*), min(v), max(v), avg(v) "
            f"FROM (SELECT timestamp, {value} AS v FROM readings "
            f"WHERE device = :device AND timestamp >= :since AND timestamp < :until "
            f"AND schema = :schema) AS s WHERE v IS NOT NULL GROUP BY b ORDER BY b"
        )
        params = {
            "since": since,
            "until": until,
            "width": width,
            "device": checksum_address(device),
            "schema": schema,
        }
        async with self._db.read() as conn:
            rows = (await conn.execute(sql, params)).all()
        return [
            SeriesBucket(since + int(b) * width, int(n), int(lo), int(hi), float(mean))
            for b, n, lo, hi, mean in rows
        ]

    async def count(self) -> int:
        """How many readings are stored."""
        async with self._db.read() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(readings))).scalar_one()
            )


@dataclass(frozen=True, slots=True)
class SeriesBucket:
    """One time bucket of :meth:`ReadingRepository.series` (values in fixed point)."""

    start_ms: int
    count: int
    min: int
    max: int
    mean: float


_Plan = list[tuple[Outcome, int | None, int | None]]


def _insert_transaction(
    conn: Connection, checked: list[_Checked], received_at: datetime, is_sqlite: bool
) -> tuple[_Plan, list[int]]:
    """The body of :meth:`ReadingRepository.insert_batch`'s write transaction: the plan, and
    the ids of the rows it inserted."""
    addresses = sorted({row[0] for row in checked})
    last_seq = _lock_devices(conn, addresses)
    candidates = [(r[0], r[1]) for r in checked if r[1] <= last_seq.get(r[0], -1)]
    existing = _existing(conn, candidates)
    plan, new = _plan(checked, last_seq, existing)
    new_ids: list[int] = []
    if new:
        if is_sqlite:
            new_ids = _insert_sqlite(conn, new, received_at)
        else:
            new_ids = _insert_returning(conn, new, received_at)
        top: dict[str, int] = {}
        for row in new:  # in increasing seq order per device
            top[row[0]] = row[1]
        moved = [{"b_address": d, "b_last_seq": seq} for d, seq in top.items()]
        conn.execute(_SET_LAST_SEQ, moved)
    return plan, new_ids


def _plan(
    checked: list[_Checked],
    last_seq: dict[str, int],
    existing: dict[tuple[str, int], tuple[int, bytes, bytes]],
) -> tuple[_Plan, list[_Checked]]:
    """The outcome of each row, and the rows to insert, in input order.

    Each plan entry holds the outcome and the id it refers to: one already in the database, or
    (as an index into the rows to insert) one of this batch.
    """
    plan: _Plan = []
    new: list[_Checked] = []
    new_index: dict[tuple[str, int], int] = {}
    current = dict(last_seq)
    for row in checked:
        device, seq, _, _, _, signature, struct_hash = row
        last = current.get(device)
        if last is None:
            plan.append((Outcome.UNKNOWN_DEVICE, None, None))
            continue
        key = (device, seq)
        hit = existing.get(key)
        if hit is not None:
            same = hit[1] == struct_hash and hit[2] == signature
            plan.append((Outcome.DUPLICATE if same else Outcome.CONFLICT, hit[0], None))
            continue
        k = new_index.get(key)
        if k is not None:
            same = new[k][6] == struct_hash and new[k][5] == signature
            plan.append((Outcome.DUPLICATE if same else Outcome.CONFLICT, None, k))
            continue
        if seq <= last:
            plan.append((Outcome.STALE, None, None))
            continue
        new_index[key] = len(new)
        plan.append((Outcome.STORED, None, len(new)))
        new.append(row)
        current[device] = seq
    return plan, new


def _insert_returning(conn: Connection, new: list[_Checked], received_at: datetime) -> list[int]:
    """One multi-row INSERT ... RETURNING id, ids in row order (PostgreSQL)."""
    params = [
        {
            "device": device,
            "seq": seq,
            "timestamp": timestamp,
            "schema": schema,
            "values": list(values),
            "signature": signature,
            "struct_hash": struct_hash,
            "received_at": received_at,
        }
        for device, seq, timestamp, schema, values, signature, struct_hash in new
    ]
    return list(conn.execute(_INSERT_RETURNING, params).scalars())


def _insert_sqlite(conn: Connection, new: list[_Checked], received_at: datetime) -> list[int]:
    """One executemany with explicit ids (SQLite, under its write lock).

    It goes to the driver's ``executemany`` directly, with the column types' own bind
    processors applied here: twice the speed of a Core executemany, same stored form.
    """
    dialect = conn.dialect
    first = int(conn.execute(_SQLITE_NEXT_ID).scalar_one())
    sql = _sqlite_insert_sql(dialect)
    when = _processor("received_at", dialect)(received_at)
    rows = [
        (
            first + k,
            device,
            seq,
            timestamp,
            schema,
            _json_ints(values),
            signature,
            struct_hash,
            when,
        )
        for k, (device, seq, timestamp, schema, values, signature, struct_hash) in enumerate(new)
    ]
    conn.exec_driver_sql(sql, rows)
    return list(range(first, first + len(new)))


_SQLITE_COLUMNS = (
    "id",
    "device",
    "seq",
    "timestamp",
    "schema",
    "values",
    "signature",
    "struct_hash",
    "received_at",
)


_SQLITE_SQL: dict[str, str] = {}  # by paramstyle


def _sqlite_insert_sql(dialect: Dialect) -> str:
    sql = _SQLITE_SQL.get(dialect.paramstyle)
    if sql is None:
        compiled = insert(readings).compile(dialect=dialect, column_keys=list(_SQLITE_COLUMNS))
        assert compiled.positiontup == list(_SQLITE_COLUMNS), compiled.positiontup
        sql = _SQLITE_SQL[dialect.paramstyle] = str(compiled)
    return sql


def _json_ints(values: tuple[int, ...]) -> str:
    """``json.dumps(list(values))`` for int64s, without the JSON processor's per-row cost."""
    return "[" + ", ".join(map(str, values)) + "]"


def _processor(column: str, dialect: Dialect) -> Callable[[Any], Any]:
    process = readings.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _identity


def _identity(value: Any) -> Any:
    return value


def _lock_devices(conn: Connection, addresses: list[str]) -> dict[str, int]:
    """``last_seq`` of the known devices among ``addresses``, their rows locked until COMMIT."""
    found: dict[str, int] = {}
    for chunk in _chunks(addresses):
        stmt = (
            select(devices.c.address, devices.c.last_seq)
            .where(devices.c.address.in_(chunk))
            .order_by(devices.c.address)
            .with_for_update()
        )
        for address, last in conn.execute(stmt):
            found[address] = last
    return found


def _existing(
    conn: Connection, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, bytes, bytes]]:
    """Stored readings at those (device, seq): id, struct hash and signature."""
    found: dict[tuple[str, int], tuple[int, bytes, bytes]] = {}
    for chunk in _chunks(keys):
        by_device: dict[str, list[int]] = defaultdict(list)
        for device, seq in chunk:
            by_device[device].append(seq)
        stmt = select(
            readings.c.device,
            readings.c.seq,
            readings.c.id,
            readings.c.struct_hash,
            readings.c.signature,
        ).where(
            or_(
                *(and_(readings.c.device == d, readings.c.seq.in_(s)) for d, s in by_device.items())
            )
        )
        for device, seq, reading_id, struct_hash, signature in conn.execute(stmt):
            found[(device, seq)] = (reading_id, bytes(struct_hash), bytes(signature))
    return found


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _stored(row: Sequence[Any]) -> StoredReading:
    rid, device, seq, timestamp, schema, values, signature, struct_hash, received, batch = row
    return StoredReading(
        id=rid,
        device=device,
        seq=seq,
        timestamp=timestamp,
        schema=bytes(schema),
        values=tuple(values),
        signature=bytes(signature),
        struct_hash=bytes(struct_hash),
        received_at=received,
        batch_id=batch,
    )


def _check(i: int, row: NewReading) -> _Checked:
    """The row's fields, device checksummed; ValueError naming the row and field otherwise."""
    if not isinstance(row, NewReading):
        raise ValueError(f"rows[{i}]: expected a NewReading, got {type(row).__name__}")
    try:
        device = checksum_address(row.device)
    except ValueError as exc:
        raise ValueError(f"rows[{i}].device: {exc}") from None
    seq, timestamp = row.seq, row.timestamp
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise ValueError(f"rows[{i}].seq: expected an integer in 0..2^63-1, got {seq!r}")
    if type(timestamp) is not int or not 0 <= timestamp <= INT64_MAX:
        raise ValueError(
            f"rows[{i}].timestamp: expected an integer in 0..2^63-1, got {timestamp!r}"
        )
    values = row.values
    if not isinstance(values, tuple | list):
        raise ValueError(
            f"rows[{i}].values: expected a tuple of int64, got {type(values).__name__}"
        )
    for v in values:
        if type(v) is not int or not INT64_MIN <= v <= INT64_MAX:
            raise ValueError(f"rows[{i}].values: {v!r} is not an int64")
    for field, size in (("schema", 32), ("signature", 65), ("struct_hash", 32)):
        value = getattr(row, field)
        if type(value) is not bytes or len(value) != size:
            raise ValueError(f"rows[{i}].{field}: expected {size} bytes, got {value!r:.80}")
    return (device, seq, timestamp, row.schema, tuple(values), row.signature, row.struct_hash)


def _int64(field: str, value: int) -> int:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{field}: expected an int64, got {value!r}")
    return value
