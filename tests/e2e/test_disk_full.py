"""A full disk under a real ``chainsense serve`` (SQLite and the dev chain's state on one small
tmpfs, in a private mount namespace made with ``unshare``): writes answer 503 with Retry-After
(never 500), ``/readyz`` says not ready within 2 s naming the full disk and the failing dev chain
state dump, ``/metrics`` counts it, and everything recovers once space is freed, with nothing
acknowledged lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chainsense.identity import DeviceKey
from tests.e2e._serve import Serve, signed_readings
from tests.support import free_port

pytestmark = [pytest.mark.chain, pytest.mark.slow]

TMPFS_MB = 48


class DiskServe(Serve):
    """``Serve`` with its data dir on a tmpfs of its own mount namespace (the test's files are
    copied in first), so the test can fill that disk without touching the machine's."""

    def start(self) -> None:
        unshare = shutil.which("unshare")
        assert unshare, "unshare (util-linux) is needed to give the server a disk to fill"
        seed = self.data_dir.with_name(self.data_dir.name + "-seed")
        if self.data_dir.exists():
            self.data_dir.rename(seed)
        else:
            seed.mkdir(parents=True)
        self.data_dir.mkdir()
        script = (
            f'mount -t tmpfs -o size={TMPFS_MB}m tmpfs "$0" && cp -a "$1"/. "$0"/ && '
            'shift && exec "$@"'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        env.update(
            CHAINSENSE_DATA_DIR=str(self.data_dir),
            CHAINSENSE_PORT=str(self.port),
            CHAINSENSE_AI_ENABLED="false",
            CHAINSENSE_MARKET_AGENT="false",
            CHAINSENSE_ANCHORING="false",
        )
        env.update({f"CHAINSENSE_{k.upper()}": v for k, v in self.settings.items()})
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script,
                    str(self.data_dir), str(seed), sys.executable, "-m", "chainsense", "serve",
                ],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def in_namespace(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the server's mount namespace (it sees the tmpfs)."""
        assert self.proc is not None
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "--user", "--mount", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiskServe]:
    server = DiskServe(
        tmp_path_factory.mktemp("disk") / "data",
        anvil_port=str(free_port()),
        rate_limit_enabled="false",
        min_free_disk_mb="4",
    )
    server.create_keys("ops")
    with server.running():
        yield server


def _readyz(serve: Serve) -> tuple[float, int, dict[str, Any]]:
    started = time.monotonic()
    answer = httpx.get(serve.url + "/readyz", timeout=30)
    return time.monotonic() - started, answer.status_code, answer.json()


def _metric(serve: Serve, line_start: str) -> float:
    text = httpx.get(serve.url + "/metrics", timeout=30).text
    values = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line_start)]
    return sum(values)


def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.5)


def test_a_full_disk_is_503_not_ready_and_recovers(serve: DiskServe) -> None:
    domain = serve.domain()
    key = DeviceKey.generate()
    serve.register(key, serve.keys["ops"])
    readings = signed_readings(key, domain, 20_000)
    http = httpx.Client(base_url=serve.url, timeout=60)

    acknowledged: set[int] = set()

    def post(n: int) -> httpx.Response:
        batch = [next(readings) for _ in range(n)]
        answer = http.post("/v1/readings", json={"readings": batch})
        if answer.status_code == 200:
            acknowledged.update(r["seq"] for r in batch)
        return answer

    first = post(10)
    assert first.status_code == 200, first.text

    filled = serve.in_namespace(
        "dd", "if=/dev/zero", f"of={serve.data_dir}/filler", "bs=1M", f"count={TMPFS_MB}"
    )
    assert "No space left on device" in filled.stderr, filled.stderr
    # a new block: the next state dump has something to write, and no room for it
    httpx.post(serve.url.replace(str(serve.port), serve.settings["anvil_port"]),
               json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []},
               timeout=10).raise_for_status()  # fmt: skip

    # Writes: stored while the WAL file still has room, then 503 + Retry-After, never 500.
    refused = None
    for _ in range(40):
        answer = post(500)
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            refused = answer
            break
    assert refused is not None, "no write failed on a full disk"
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()["type"].endswith("/store-unavailable")
    assert "full" in refused.json()["detail"]

    elapsed, status, body = _readyz(serve)
    print(f"\n503 detail: {refused.json()['detail']}\n/readyz in {elapsed:.2f} s: {body}")
    assert elapsed < 2.0
    assert status == 503
    assert body["status"] == "not ready"
    assert body["checks"]["database_writes"].startswith("failing:")
    assert "disk full" in body["checks"]["database_writes"]
    assert body["checks"]["database"].startswith("ok")  # reads still work
    dump = _until(
        "the failing state dump in /readyz",
        lambda: (c := _readyz(serve)[2]["checks"]["dev_chain_state"]).startswith("failing") and c,
    )
    assert "No space left on device" in dump
    assert "roll the dev chain back" in dump
    assert _metric(serve, 'chainsense_unavailable_responses_total{dependency="store"}') >= 1
    _until("dump_ok 0", lambda: _metric(serve, "chainsense_dev_chain_state_dump_ok ") == 0, 12)
    assert _metric(serve, "chainsense_store_writes_failing ") == 1

    freed = serve.in_namespace("rm", f"{serve.data_dir}/filler")
    assert freed.returncode == 0, freed.stderr
    _until("ready again", lambda: _readyz(serve)[1] == 200)
    again = post(10)
    assert again.status_code == 200, again.text
    # nothing acknowledged was lost (and nothing refused was stored)
    stored: set[int] = set()
    cursor = None
    while True:
        page = http.get(
            "/v1/readings",
            params={"device": key.address, "limit": 1000} | ({"cursor": cursor} if cursor else {}),
            headers={"Authorization": f"Bearer {serve.keys['ops']}"},
        ).json()
        stored.update(r["seq"] for r in page["items"])
        if not (cursor := page["next_cursor"]):
            break
    assert stored == acknowledged
    http.close()
