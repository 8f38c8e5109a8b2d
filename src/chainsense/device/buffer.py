"""The device's offline buffer: a small SQLite file that makes readings survive restarts.

It holds, for one device key:

- the next ``seq`` to use. A seq is taken, the reading signed and stored, and the counter moved on
  in one transaction (``BEGIN IMMEDIATE``, WAL, ``synchronous=FULL``), so a seq that reached the
  buffer is never handed out again, even after a crash or a power cut, and a crash before the
  commit leaves nothing behind that was used;
- signed readings not yet acknowledged by the platform, in seq order (``pending``);
- readings the platform refused for good, with its RFC 9457 problem (``rejected``), so that they
  never block the queue and are never silently lost;
- the platform's EIP-712 domain (chain id and DeviceRegistry address), cached on first contact so
  the device can keep signing while the platform is unreachable.

Several processes may share one buffer file (a sampling daemon and a ``flush`` from cron): the
seq counter is taken under SQLite's write lock, and settling the same reading twice is harmless.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainsense.device.errors import OfflineBufferError
from chainsense.identity import Reading

__all__ = ["BufferStats", "BufferedReading", "Domain", "OfflineBuffer", "RejectedReading"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    seq         INTEGER PRIMARY KEY,
    timestamp   INTEGER NOT NULL,
    schema      TEXT NOT NULL,
    "values"    TEXT NOT NULL,
    signature   TEXT NOT NULL,
    chain_id    INTEGER NOT NULL,
    contract    TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq         INTEGER PRIMARY KEY,
    timestamp   INTEGER NOT NULL,
    schema      TEXT NOT NULL,
    "values"    TEXT NOT NULL,
    signature   TEXT NOT NULL,
    chain_id    INTEGER NOT NULL,
    contract    TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    status      INTEGER NOT NULL,
    problem     TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
"""
_COLUMNS = 'seq, timestamp, schema, "values", signature, chain_id, contract, recorded_at'


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain readings are signed in: a chain id and the DeviceRegistry address."""

    chain_id: int
    verifying_contract: str


@dataclass(frozen=True)
class BufferedReading:
    """A signed reading as the buffer keeps it, with the domain it was signed in."""

    reading: Reading
    signature: bytes
    domain: Domain
    recorded_at: float
    """Wall-clock time (s since the epoch) the reading entered the buffer."""

    @property
    def seq(self) -> int:
        """The reading's seq."""
        return self.reading.seq

    def to_json(self) -> dict[str, Any]:
        """The raw JSON form the platform takes (ARCHITECTURE "Wire formats")."""
        return {**self.reading.to_json(), "signature": "0x" + self.signature.hex()}


@dataclass(frozen=True)
class RejectedReading:
    """A reading the platform refused for good, with its HTTP status and problem document."""

    buffered: BufferedReading
    status: int
    problem: Mapping[str, Any]
    rejected_at: float

    @property
    def seq(self) -> int:
        """The reading's seq."""
        return self.buffered.seq

    @property
    def summary(self) -> str:
        """``403 Unknown device: 0x… is not registered …`` in one line."""
        title = self.problem.get("title") or "rejected"
        detail = self.problem.get("detail")
        return f"{self.status} {title}: {detail}" if detail else f"{self.status} {title}"


@dataclass(frozen=True)
class BufferStats:
    """What ``chainsense device status`` shows."""

    device: str | None
    next_seq: int
    pending: int
    rejected: int
    oldest_pending: BufferedReading | None
    domain: Domain | None


class OfflineBuffer:
    """The SQLite-backed buffer of one device. Thread-safe; open it once per process.

    >>> import tempfile, pathlib
    >>> with OfflineBuffer(pathlib.Path(tempfile.mkdtemp()) / "b.sqlite") as buffer:
    ...     buffer.next_seq
    1
    """

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        """Open (or create) the buffer at ``path``; ``timeout`` is how long to wait for another
        process holding the write lock."""
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise OfflineBufferError(self.path, f"cannot open: {exc}") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise OfflineBufferError(self.path, f"not a usable buffer: {exc}") from None
        except OfflineBufferError:
            self._db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise OfflineBufferError(self.path, "the file system does not support WAL")
        db.execute("PRAGMA synchronous=FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OfflineBufferError(
                self.path, f"made by a newer ChainSense (format {version} > {SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', '1')")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the file. Everything written is already durable."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> OfflineBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OfflineBuffer({str(self.path)!r})"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from the start."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- the device, its seq counter and its domain ------------------------------------------

    @property
    def device(self) -> str | None:
        """The device address this buffer belongs to (set by the first reading)."""
        with self._lock:
            return self._meta("device")

    @property
    def next_seq(self) -> int:
        """The seq the next reading will get."""
        with self._lock:
            return int(self._meta("next_seq") or 1)

    def advance_seq(self, at_least: int) -> int:
        """Make the next seq at least ``at_least`` (never lowers it); returns the next seq.

        For a device whose old buffer was lost: the platform refuses seqs at or below the last
        one it stored (``GET /v1/devices/{address}`` shows it as ``last_seq``).
        """
        with self._lock, self._write():
            current = int(self._meta("next_seq") or 1)
            if at_least > current:
                self._set_meta("next_seq", str(at_least))
                current = at_least
            return current

    @property
    def domain(self) -> Domain | None:
        """The cached EIP-712 domain, or None before the first contact."""
        with self._lock:
            chain_id, contract = self._meta("chain_id"), self._meta("verifying_contract")
        if chain_id is None or contract is None:
            return None
        return Domain(int(chain_id), contract)

    def set_domain(self, domain: Domain) -> None:
        """Cache the platform's EIP-712 domain."""
        with self._lock, self._write():
            self._set_meta("chain_id", str(domain.chain_id))
            self._set_meta("verifying_contract", domain.verifying_contract)

    def append(
        self, device: str, domain: Domain, sign: Callable[[int], tuple[Reading, bytes]]
    ) -> BufferedReading:
        """Take the next seq, let ``sign(seq)`` build and sign the reading, and store it; all in
        one durable transaction. If ``sign`` raises, nothing is stored and the seq is not used.

        Raises :class:`OfflineBufferError` if the buffer belongs to another device.
        """
        with self._lock, self._write() as db:
            owner = self._meta("device")
            if owner is None:
                self._set_meta("device", device)
            elif owner != device:
                raise OfflineBufferError(
                    self.path, f"belongs to device {owner}, not {device}; use another buffer file"
                )
            seq = int(self._meta("next_seq") or 1)
            reading, signature = sign(seq)
            if reading.seq != seq or reading.device != device:
                raise ValueError("sign(seq) must return a reading of this device with that seq")
            entry = BufferedReading(reading, signature, domain, time.time())
            db.execute(
                f"INSERT INTO pending ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(entry)
            )
            self._set_meta("next_seq", str(seq + 1))
        return entry

    # --- the queue -----------------------------------------------------------------------------

    def pending(self, limit: int | None = None, *, after: int = 0) -> list[BufferedReading]:
        """Unacknowledged readings with seq above ``after``, oldest first."""
        with self._lock:
            device = self._meta("device")
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM pending WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, -1 if limit is None else limit),
            ).fetchall()
        return [_entry(device, row) for row in rows]

    def pending_count(self) -> int:
        """How many readings wait for the platform."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def settle(
        self,
        *,
        acknowledged: Iterable[int] = (),
        rejected: Iterable[tuple[int, int, Mapping[str, Any]]] = (),
    ) -> None:
        """Apply the platform's answers in one transaction: drop the ``acknowledged`` seqs
        (stored or duplicate), and move each ``(seq, status, problem)`` of ``rejected`` from the
        queue to the rejected table. Seqs no longer pending are ignored (another process may
        have settled them already)."""
        now = time.time()
        with self._lock, self._write() as db:
            db.executemany("DELETE FROM pending WHERE seq = ?", [(s,) for s in acknowledged])
            for seq, status, problem in rejected:
                moved = db.execute(
                    f"INSERT OR REPLACE INTO rejected ({_COLUMNS}, status, problem, rejected_at) "
                    f"SELECT {_COLUMNS}, ?, ?, ? FROM pending WHERE seq = ?",
                    (status, json.dumps(dict(problem)), now, seq),
                ).rowcount
                if moved:
                    db.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def count_signed_elsewhere(self, domain: Domain) -> int:
        """How many pending readings were signed in a domain other than ``domain``."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM pending WHERE chain_id != ? OR contract != ?",
                (domain.chain_id, domain.verifying_contract),
            ).fetchone()
        return int(row[0])

    # --- rejected readings ----------------------------------------------------------------------

    def rejected(self, limit: int | None = None) -> list[RejectedReading]:
        """Readings the platform refused, most recently rejected first."""
        with self._lock:
            device = self._meta("device")
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, status, problem, rejected_at FROM rejected "
                "ORDER BY rejected_at DESC, seq DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [
            RejectedReading(_entry(device, row[:8]), row[8], json.loads(row[9]), row[10])
            for row in rows
        ]

    def rejected_count(self) -> int:
        """How many readings the platform refused."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM rejected").fetchone()[0])

    def requeue_rejected(self, seqs: Iterable[int] | None = None) -> int:
        """Put rejected readings (all, or those ``seqs``) back in the queue, unchanged; returns
        how many. Worth it when the cause is gone (say the device was registered since) and the
        platform has stored no later seq of this device: seqs must still increase."""
        with self._lock, self._write() as db:
            if seqs is None:
                targets = [row[0] for row in db.execute("SELECT seq FROM rejected ORDER BY seq")]
            else:
                targets = list(seqs)
            count = 0
            for seq in targets:
                count += db.execute(
                    f"INSERT OR IGNORE INTO pending ({_COLUMNS}) "
                    f"SELECT {_COLUMNS} FROM rejected WHERE seq = ?",
                    (seq,),
                ).rowcount
                db.execute("DELETE FROM rejected WHERE seq = ?", (seq,))
            return count

    def stats(self) -> BufferStats:
        """Next seq, queue length, rejected count, the oldest pending reading and the domain."""
        oldest = self.pending(1)
        return BufferStats(
            device=self.device,
            next_seq=self.next_seq,
            pending=self.pending_count(),
            rejected=self.rejected_count(),
            oldest_pending=oldest[0] if oldest else None,
            domain=self.domain,
        )


def _row(entry: BufferedReading) -> tuple[Any, ...]:
    reading = entry.reading
    return (
        reading.seq,
        reading.timestamp,
        "0x" + reading.schema.hex(),
        json.dumps(list(reading.values)),
        "0x" + entry.signature.hex(),
        entry.domain.chain_id,
        entry.domain.verifying_contract,
        entry.recorded_at,
    )


def _entry(device: str | None, row: tuple[Any, ...]) -> BufferedReading:
    seq, timestamp, schema, values, signature, chain_id, contract, recorded_at = row
    if device is None:  # pragma: no cover - rows exist only once the device is set
        raise OfflineBufferError("<buffer>", "readings without a device")
    reading = Reading(device, seq, timestamp, bytes.fromhex(schema[2:]), tuple(json.loads(values)))
    return BufferedReading(
        reading, bytes.fromhex(signature[2:]), Domain(chain_id, contract), recorded_at
    )
