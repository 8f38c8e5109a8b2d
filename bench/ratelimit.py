"""Rate limits under a flood, against a real ``chainsense serve`` (its own Anvil, SQLite).

One API key floods ``GET /v1/schemas`` from 8 concurrent clients while another key sends one
request every 0.1 s (under its limit). Printed: requests sent, 429s, the other key's success
rate and latency, and that latency as a ratio to the same key's latency measured alone in the
same run (the reference). Limits: 20 requests/s per key, burst 40.

    python bench/ratelimit.py [seconds]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e._serve import Serve, Stats, flood


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        serve = Serve(
            Path(tmp) / "data",
            rate_limit_key_rate="20",
            rate_limit_key_burst="40",
            ai_enabled="false",
        )
        serve.create_keys("flood", "other")
        serve.start()
        try:
            serve.wait_ready()
            url = serve.url + "/v1/schemas"

            def get(key: str):  # type: ignore[no-untyped-def]
                headers = {"Authorization": f"Bearer {serve.keys[key]}"}
                return lambda http: http.get(url, headers=headers)

            alone = Stats()
            flood([(alone, 1, 0.1, get("other"))], seconds=seconds / 2)
            flooder, other = Stats(), Stats()
            elapsed = flood(
                [(flooder, 8, 0.0, get("flood")), (other, 1, 0.1, get("other"))], seconds
            )
        finally:
            serve.stop()
    p50 = sorted(other.latencies_ok)[len(other.latencies_ok) // 2] if other.ok else 0
    ref = sorted(alone.latencies_ok)[len(alone.latencies_ok) // 2] if alone.ok else 0
    print(f"flood window {elapsed:.1f} s, limit 20/s per key (burst 40)")
    print(f"flooding key:       {flooder.summary()}")
    print(f"  served {flooder.ok / elapsed:.1f}/s of {flooder.sent / elapsed:.0f}/s sent")
    print(f"other key (flood):  {other.summary()}")
    print(f"other key (alone):  {alone.summary()}")
    if ref:
        print(f"other key p50 latency during the flood / alone: {p50 / ref:.2f}")


if __name__ == "__main__":
    main()
