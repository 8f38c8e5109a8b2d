"""Insert rate of ``ReadingRepository.insert_batch`` on SQLite and PostgreSQL.

Prints rows/s for batches of 100 and 1000 rows (each batch one durable transaction: fsync'd on
SQLite with synchronous=FULL), for one writer and for 8 concurrent writers, and the ratio to
secp256k1 public-key recovery on one core (the ingest ceiling, measured in the same run).
PostgreSQL runs on a throw-away database of the local server when it answers; otherwise that
part is reported as skipped. Run: ``.venv/bin/python bench/store.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime

from coincurve import PrivateKey, PublicKey
from eth_utils.address import to_checksum_address

from chainsense.store import NewReading, Outcome, Store

ADMIN_DSN = os.environ.get("CHAINSENSE_BENCH_PG_ADMIN", "postgresql://root@127.0.0.1:5432/postgres")
ROWS = {100: 20_000, 1000: 50_000}  # rows inserted per batch size
WRITERS = 8


def device(n: int) -> str:
    return to_checksum_address("0x" + hashlib.sha256(b"bench%d" % n).hexdigest()[:40])


def batches(dev: str, first_seq: int, size: int, count: int) -> list[list[NewReading]]:
    schema = hashlib.sha256(b"bench/v1").digest()
    out = []
    seq = first_seq
    for _ in range(count):
        out.append(
            [
                NewReading(
                    device=dev,
                    seq=seq + i,
                    timestamp=1_763_700_000_000 + (seq + i) * 1000,
                    schema=schema,
                    values=(4150 + i, -620, seq + i),
                    signature=secrets.token_bytes(64) + b"\x1b",
                    struct_hash=secrets.token_bytes(32),
                )
                for i in range(size)
            ]
        )
        seq += size
    return out


def recover_rate(seconds: float = 0.5) -> float:
    key = PrivateKey(secrets.token_bytes(32))
    digest = hashlib.sha256(b"reading").digest()
    sig = key.sign_recoverable(digest, hasher=None)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            PublicKey.from_signature_and_message(sig, digest, hasher=None)
        n += 200
    return n / (time.perf_counter() - start)


async def one_writer(store: Store, size: int, rows: int, dev: str) -> float:
    work = batches(dev, 1, size, rows // size)
    start = time.perf_counter()
    for batch in work:
        results = await store.readings.insert_batch(batch)
        assert results[-1].outcome is Outcome.STORED
    return rows / (time.perf_counter() - start)


async def many_writers(store: Store, size: int, rows: int, devs: list[str]) -> float:
    per = rows // size // len(devs)
    work = [batches(d, 1, size, per) for d in devs]

    async def run(mine: list[list[NewReading]]) -> None:
        for batch in mine:
            await store.readings.insert_batch(batch)

    start = time.perf_counter()
    await asyncio.gather(*(run(mine) for mine in work))
    return per * size * len(devs) / (time.perf_counter() - start)


async def bench(url: str, label: str, ceiling: float) -> None:
    store = await Store.open(url)
    try:
        devs = [device(i) for i in range(len(ROWS) * (1 + WRITERS))]
        now = datetime.now(UTC)
        for d in devs:
            await store.devices.upsert(
                address=d, owner=d, metadata_hash=bytes(32), status="active", registered_at=now
            )
        n = 0
        for size, rows in ROWS.items():
            rate = await one_writer(store, size, rows, devs[n])
            n += 1
            print(
                f"{label:10} batch {size:>4}, 1 writer : {rate:>8,.0f} rows/s"
                f"  ({rate / ceiling:.2f}x one core of signature recovery)"
            )
        for size, rows in ROWS.items():
            group = devs[n : n + WRITERS]
            n += WRITERS
            rate = await many_writers(store, size, rows, group)
            print(
                f"{label:10} batch {size:>4}, {WRITERS} writers: {rate:>8,.0f} rows/s"
                f"  ({rate / ceiling:.2f}x one core of signature recovery)"
            )
    finally:
        await store.close()


async def postgres_database() -> tuple[str | None, str]:
    try:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    name = f"chainsense_bench_{secrets.token_hex(4)}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}", name


async def drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main() -> None:
    ceiling = recover_rate()
    print(f"secp256k1 recovery, one core: {ceiling:,.0f}/s (the ingest ceiling)")
    with tempfile.TemporaryDirectory() as tmp:
        await bench(f"sqlite+aiosqlite:///{tmp}/chainsense.db", "sqlite", ceiling)
    url, name = await postgres_database()
    if url is None:
        print(f"postgresql skipped: server not reachable ({name})")
        return
    try:
        await bench(url, "postgresql", ceiling)
    finally:
        await drop(name)


if __name__ == "__main__":
    asyncio.run(main())
