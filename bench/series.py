"""The series endpoint's downsampling on a year of data: how long one chart's query takes.

A SQLite store (the embedded default) gets one device with a year of readings, one a minute
(525,600 rows, chainsense.coldchain.v1), plus a second device with as many rows so the index
has to pick one device's range. Rows are stored through ``insert_batch`` with random
signature bytes: the query never looks at them. Then ``ReadingRepository.series`` asks for the
whole year in 1,000 buckets, and for the last 24 h in 300, five times each (median reported).

Reference, measured in the same run on the same table: reading the same year's rows out of the
database (``query``, 10,000 per page), which is what a chart without server-side downsampling
would need before drawing anything. Optionally (``--postgres``) the same on PostgreSQL.

    .venv/bin/python bench/series.py [--rows 525600] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from chainsense.store import NewReading, Store
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
DEVICES = ("0x" + "11" * 20, "0x" + "22" * 20)
MINUTE = 60_000
START = 1_735_689_600_000  # 2025-01-01


async def fill(store: Store, rows: int) -> None:
    now = datetime.now(UTC)
    for address in DEVICES:
        await store.devices.upsert(
            address=address, owner=address, metadata_hash=b"\0" * 32, status="active",
            registered_at=now,
        )  # fmt: skip
    chunk = 10_000
    for start in range(0, rows, chunk):
        batch = []
        for n in range(start, min(rows, start + chunk)):
            for d, address in enumerate(DEVICES):
                temp = 400 + (n * 7 + d * 13) % 300
                batch.append(
                    NewReading(address, n + 1, START + n * MINUTE, COLD.id, (temp, 600),
                               os.urandom(65), os.urandom(32))
                )  # fmt: skip
        await store.readings.insert_batch(batch)


async def timed(label: str, repeat: int, call) -> float:  # type: ignore[no-untyped-def]
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    size = len(result) if result is not None else 0
    print(f"{label:<46} {median * 1000:9.1f} ms  ({size} items)")
    return median


async def run(url: str, rows: int) -> None:
    store = await Store.open(url)
    try:
        t0 = time.perf_counter()
        await fill(store, rows)
        print(f"filled {rows * 2:,} rows in {time.perf_counter() - t0:.1f} s ({store.dialect})")
        end = START + rows * MINUTE
        device = DEVICES[0]

        async def year() -> list[object]:
            return list(await store.readings.series(
                device=device, schema=COLD.id, index=0, since_ms=START, until_ms=end,
                buckets=1000,
            ))  # fmt: skip

        async def day() -> list[object]:
            return list(await store.readings.series(
                device=device, schema=COLD.id, index=0, since_ms=end - 86_400_000,
                until_ms=end, buckets=300,
            ))  # fmt: skip

        async def raw() -> list[object]:
            out: list[object] = []
            after = None
            while True:
                page = await store.readings.query(device=device, after_id=after, limit=10_000)
                out.extend(page)
                if len(page) < 10_000:
                    return out
                after = page[-1].id

        t_year = await timed("series: one year, 1000 buckets", 5, year)
        await timed("series: last 24 h, 300 buckets", 5, day)
        t_raw = await timed("reference: read the year's rows (no downsampling)", 1, raw)
        print(f"ratio series(year) / reading the rows: {t_year / t_raw:.3f}")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=525_600, help="readings per device")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args.rows))
    if args.postgres:
        from tests.support import temp_postgres_database

        with temp_postgres_database() as url:
            asyncio.run(run(url, args.rows))


if __name__ == "__main__":
    main()
