"""Separate processes: a writer killed with SIGKILL loses nothing it acknowledged, and writers
in several processes never store a seq twice nor out of order."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from chainsense.store import Outcome, Store

from ._support import address, reading, register, seqs_in_id_order
from .conftest import Backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
DEVICE = address(1)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.store.writer_process",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _acks(text: bytes) -> list[tuple[int, list[int]]]:
    acks = []
    for line in text.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":  # a line cut by the kill is not an ack
            acks.append((int(parts[1]), [int(i) for i in parts[2].split(",")]))
    return acks


async def test_sigkill_mid_run_loses_no_acknowledged_reading(tmp_path: Path) -> None:
    path = tmp_path / "chainsense.db"
    url = f"sqlite+aiosqlite:///{path}"
    store = await Store.open(url)
    await register(store, DEVICE)
    await store.close()

    proc = await _spawn("crash", url, DEVICE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    seen = b""
    try:
        async with asyncio.timeout(90):
            while seen.count(b"\n") < 40:
                line = await proc.stdout.readline()
                if not line:
                    err = await proc.stderr.read()
                    pytest.fail(f"the writer died on its own: {err.decode()[-2000:]}")
                seen += line
    finally:
        proc.send_signal(signal.SIGKILL)  # it never pauses between batches: mid-transaction
        seen += await proc.stdout.read()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    acks = _acks(seen)
    assert len(acks) >= 40

    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reopened = await Store.open(url)
    try:
        for seq, ids in acks:
            for reading_id in ids:
                assert await reading_id_exists(reopened, reading_id), (seq, reading_id)
        last_acked = acks[-1][0]
        record = await reopened.devices.get(DEVICE)
        assert record is not None
        assert record.last_seq >= last_acked
        assert await reopened.readings.count() == record.last_seq
        assert await seqs_in_id_order(reopened, DEVICE) == list(range(1, record.last_seq + 1))
        (after,) = await reopened.readings.insert_batch([reading(DEVICE, record.last_seq + 1)])
        assert after.outcome is Outcome.STORED
    finally:
        await reopened.close()


async def reading_id_exists(store: Store, reading_id: int) -> bool:
    return await store.readings.get(reading_id) is not None


async def test_writer_processes_never_store_a_seq_twice(store: Store, backend: Backend) -> None:
    await register(store, DEVICE)
    top = 200
    procs = [await _spawn("race", backend.url, DEVICE, str(top), str(w)) for w in range(3)]
    try:
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.strip() == b"done"
    seqs = await seqs_in_id_order(store, DEVICE)
    assert seqs == sorted(set(seqs)), "a seq stored twice, or stored after a higher one"
    assert seqs[-1] == top
    assert len(seqs) > top // 2  # the later starters only lose the seqs below their start
    assert await store.readings.count() == len(seqs)
