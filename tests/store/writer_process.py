"""A separate writer process for the crash and multi-process tests (run with ``python -m``).

``crash URL DEVICE``: insert batches of 20 readings of DEVICE forever, printing
``ack <last seq> <id,id,...>`` after each ``insert_batch`` returns, until killed.
``race URL DEVICE TOP WORKER``: insert seqs 1..TOP of DEVICE in overlapping windows (identical
content in every process), then print ``done``.
"""

from __future__ import annotations

import asyncio
import sys

from chainsense.store import Store

from ._support import reading


async def crash(url: str, device: str) -> None:
    store = await Store.open(url)
    record = await store.devices.get(device)
    seq = record.last_seq if record else 0
    while True:
        batch = [reading(device, seq + i) for i in range(1, 21)]
        results = await store.readings.insert_batch(batch)
        seq += 20
        ids = ",".join(str(r.reading_id) for r in results)
        print(f"ack {seq} {ids}", flush=True)


async def race(url: str, device: str, top: int, worker: int) -> None:
    store = await Store.open(url)
    try:
        start = 1 + worker * 2
        while True:
            end = min(start + 9 + worker, top + 1)
            await store.readings.insert_batch([reading(device, s) for s in range(start, end)])
            if end > top:
                break
            start = end - worker  # windows overlap by ``worker`` seqs
        print("done", flush=True)
    finally:
        await store.close()


def main(argv: list[str]) -> None:
    mode, url, device, *rest = argv
    if mode == "crash":
        asyncio.run(crash(url, device))
    else:
        asyncio.run(race(url, device, int(rest[0]), int(rest[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
