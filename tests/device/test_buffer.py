"""The offline buffer: the seq counter survives reopening and a kill -9, readings stay in seq
order, refused readings move aside with their problem and never block the queue."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chainsense.device import BufferedReading, Domain, OfflineBuffer, OfflineBufferError
from chainsense.identity import DeviceKey, Reading
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
SCHEMA = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1").id
KEY = DeviceKey(bytes.fromhex("01" * 32))


def _append(
    buffer: OfflineBuffer, key: DeviceKey = KEY, timestamp: int = 1_763_700_000_000
) -> BufferedReading:
    def sign(seq: int) -> tuple[Reading, bytes]:
        reading = key.reading(seq=seq, timestamp=timestamp + seq, schema=SCHEMA, values=(415, 620))
        return reading, key.sign(reading, DOMAIN.chain_id, DOMAIN.verifying_contract)

    return buffer.append(key.address, DOMAIN, sign)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "device.buffer.sqlite"


def test_a_new_buffer_starts_at_seq_1_and_is_durable_wal(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        assert buffer.next_seq == 1
        assert buffer.device is None
        assert buffer.domain is None
        assert buffer.pending() == []
        assert buffer.rejected() == []
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_seqs_increase_and_persist_across_reopen(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        seqs = [_append(buffer).seq for _ in range(3)]
        assert seqs == [1, 2, 3]
    with OfflineBuffer(path) as buffer:
        assert buffer.next_seq == 4
        assert buffer.device == KEY.address
        assert _append(buffer).seq == 4
        pending = buffer.pending()
    assert [p.seq for p in pending] == [1, 2, 3, 4]
    first = pending[0]
    assert first.reading == KEY.reading(
        seq=1, timestamp=1_763_700_000_001, schema=SCHEMA, values=(415, 620)
    )
    assert first.domain == DOMAIN
    assert first.signature == KEY.sign(first.reading, DOMAIN.chain_id, DOMAIN.verifying_contract)
    assert first.to_json()["signature"] == "0x" + first.signature.hex()


def test_the_counter_and_readings_survive_a_kill_9(path: Path) -> None:
    """A process appends three readings and kills itself without closing anything."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from tests.device.test_buffer import OfflineBuffer, _append
        buffer = OfflineBuffer({str(path)!r})
        for _ in range(3):
            _append(buffer)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    assert done.returncode == -9
    with OfflineBuffer(path) as buffer:
        assert buffer.next_seq == 4
        assert [p.seq for p in buffer.pending()] == [1, 2, 3]
        assert _append(buffer).seq == 4


def test_a_failed_signature_uses_no_seq(path: Path) -> None:
    def broken(seq: int) -> tuple[Reading, bytes]:
        raise RuntimeError("sensor unplugged")

    with OfflineBuffer(path) as buffer:
        with pytest.raises(RuntimeError):
            buffer.append(KEY.address, DOMAIN, broken)
        assert buffer.next_seq == 1
        assert buffer.pending() == []
        assert _append(buffer).seq == 1


def test_a_buffer_belongs_to_one_device(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        _append(buffer)
        other = DeviceKey(bytes.fromhex("02" * 32))
        with pytest.raises(OfflineBufferError, match="belongs to device"):
            _append(buffer, other)
        assert buffer.next_seq == 2


def test_settle_drops_acknowledged_and_moves_rejected_aside(path: Path) -> None:
    problem = {
        "type": "/problems/unknown-device",
        "title": "Unknown device",
        "status": 403,
        "detail": "not registered",
    }
    with OfflineBuffer(path) as buffer:
        for _ in range(5):
            _append(buffer)
        buffer.settle(acknowledged=[1, 3], rejected=[(2, 403, problem)])
        assert [p.seq for p in buffer.pending()] == [4, 5]
        assert buffer.pending_count() == 2
        assert [p.seq for p in buffer.pending(after=4)] == [5]
        assert [p.seq for p in buffer.pending(1)] == [4]
        (rejected,) = buffer.rejected()
        assert rejected.seq == 2
        assert rejected.status == 403
        assert rejected.problem == problem
        assert rejected.summary == "403 Unknown device: not registered"
        assert rejected.buffered.reading.timestamp == 1_763_700_000_002
        # settling again (another process got there first) changes nothing
        buffer.settle(acknowledged=[1, 3], rejected=[(2, 409, {"title": "again"})])
        assert buffer.rejected_count() == 1
        assert buffer.rejected()[0].status == 403
        assert _append(buffer).seq == 6  # a rejected seq is never handed out again


def test_rejected_readings_can_be_requeued_unchanged(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        before = [_append(buffer) for _ in range(3)]
        buffer.settle(rejected=[(1, 403, {"title": "Unknown device"}), (2, 403, {})])
        assert buffer.requeue_rejected([2]) == 1
        assert [p.seq for p in buffer.pending()] == [2, 3]
        assert buffer.requeue_rejected() == 1
        assert buffer.rejected_count() == 0
        assert buffer.pending() == before


def test_domain_is_cached(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        buffer.set_domain(DOMAIN)
    with OfflineBuffer(path) as buffer:
        assert buffer.domain == DOMAIN
        _append(buffer)
        assert buffer.count_signed_elsewhere(DOMAIN) == 0
        other = Domain(1, DOMAIN.verifying_contract)
        assert buffer.count_signed_elsewhere(other) == 1


def test_advance_seq_never_lowers(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        assert buffer.advance_seq(100) == 100
        assert buffer.advance_seq(5) == 100
        assert _append(buffer).seq == 100


def test_stats(path: Path) -> None:
    with OfflineBuffer(path) as buffer:
        buffer.set_domain(DOMAIN)
        for _ in range(3):
            _append(buffer)
        buffer.settle(acknowledged=[1], rejected=[(2, 422, {})])
        stats = buffer.stats()
    assert stats.device == KEY.address
    assert stats.next_seq == 4
    assert stats.pending == 1
    assert stats.rejected == 1
    assert stats.oldest_pending is not None
    assert stats.oldest_pending.seq == 3
    assert stats.domain == DOMAIN


def test_unusable_files_are_refused_clearly(path: Path) -> None:
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OfflineBufferError, match="not a usable buffer"):
        OfflineBuffer(path)
    newer = path.with_name("newer.sqlite")
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(OfflineBufferError, match="newer ChainSense"):
        OfflineBuffer(newer)


def test_two_processes_never_share_a_seq(path: Path) -> None:
    with OfflineBuffer(path):
        pass  # created up front, so both writers open an existing file
    script = textwrap.dedent(
        f"""
        from tests.device.test_buffer import OfflineBuffer, _append
        with OfflineBuffer({str(path)!r}) as buffer:
            for _ in range(40):
                _append(buffer)
        """
    )
    root = Path(__file__).parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=root) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    with OfflineBuffer(path) as buffer:
        assert [p.seq for p in buffer.pending()] == list(range(1, 81))
        assert buffer.next_seq == 81
