"""Why the ingest checks run on the event loop and not in a worker thread (the GIL's convoy).

    .venv/bin/python bench/gil_convoy.py [--readings 100] [--repeat 5]

Recovers ``--readings`` signatures (struct hash + libsecp256k1 recovery, as the ingest checks do)
alone, then in a thread while the main thread runs pure Python (as a busy event loop does), at
the default switch interval (5 ms) and shorter ones. libsecp256k1 releases the GIL for every
recovery; each time, the thread waits for the busy main thread to hand it back, up to a switch
interval. Prints the median wall time of each case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base
from chainsense.identity import ReadingVerifier
from chainsense.identity.eip712 import struct_hash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    domain = base.Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    devices = max(1, args.readings // 10)
    signed = base._sign_all(base._device_keys(devices), -(-args.readings // devices), domain)
    items = [(r, s) for rows in signed.per_device for r, s, _ in rows][: args.readings]
    verifier = ReadingVerifier(domain.chain_id, domain.registry)

    def check_all() -> float:
        started = time.perf_counter()
        for reading, signature in items:
            verifier.recover_struct_bytes(struct_hash(reading), signature)
        return time.perf_counter() - started

    def in_a_thread_beside_a_busy_loop(interval: float) -> float:
        sys.setswitchinterval(interval)
        took: list[float] = []
        thread = threading.Thread(target=lambda: took.append(check_all()))
        thread.start()
        x = 0
        while thread.is_alive():
            for i in range(1000):
                x += i * i
        thread.join()
        return took[0]

    default = sys.getswitchinterval()
    print(f"{len(items)} recoveries; median of {args.repeat}")
    alone = statistics.median(check_all() for _ in range(args.repeat))
    print(f"  alone, on the calling thread:                      {alone * 1000:7.1f} ms")
    for interval in (default, 0.001, 0.0002):
        took = statistics.median(
            in_a_thread_beside_a_busy_loop(interval) for _ in range(args.repeat)
        )
        print(
            f"  in a thread, main thread busy, switch {interval * 1000:3.1f} ms:    "
            f"{took * 1000:7.1f} ms ({took / alone:.1f} x)"
        )
    sys.setswitchinterval(default)


if __name__ == "__main__":
    main()
