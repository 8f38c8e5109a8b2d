"""Store faults: a PostgreSQL server that ends a session mid-transaction (what a restart does) is
"unavailable" (503), not an unexpected error (500); the write path's health follows real write
outcomes and ``check_writes`` says why writes fail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from chainsense.store import Store, StoreUnavailableError
from tests.support import POSTGRES_ADMIN_DSN, free_port


@pytest.mark.postgres
async def test_a_session_terminated_mid_write_is_unavailable(postgres_url: str) -> None:
    store = await Store.open(postgres_url)
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:

        async def write() -> None:
            async with store._db.write() as conn:
                await conn.execute(text("SELECT pg_sleep(5)"))

        task = asyncio.create_task(write())
        database = postgres_url.rsplit("/", 1)[1]
        for _ in range(100):  # terminate the backend running the sleep, as a restart would
            done = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND query LIKE 'SELECT pg_sleep%'",
                database,
            )
            if done:
                break
            await asyncio.sleep(0.05)
        assert done
        with pytest.raises(StoreUnavailableError):
            await task
        assert store.write_health.failing_since is not None
        with pytest.raises(StoreUnavailableError, match="writes failing for"):
            await store.check_writes(timeout=2)
        store.write_health.last_failed -= 60  # the failure is old: the check tries a write
        assert await store.check_writes(timeout=5) == "ok (write probe committed)"
        assert store.write_health.failing_since is None
    finally:
        await admin.close()
        await store.close()


async def test_check_writes_trusts_a_recent_write_and_probes_when_idle(store: Store) -> None:
    await store.readings.count()  # a read is no write
    health = store.write_health
    assert health.last_ok is not None  # opening it migrated: a write
    assert (await store.check_writes(timeout=5)).startswith("ok (last write")
    health.last_ok -= 3600
    assert await store.check_writes(timeout=5) == "ok (write probe committed)"
    assert (await store.check_writes(timeout=5)).startswith("ok (last write")


async def test_check_writes_refuses_a_sqlite_disk_without_room(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'chainsense.db'}")
    try:
        assert (await store.check_writes(timeout=5, min_free_bytes=1)).startswith("ok")
        with pytest.raises(StoreUnavailableError, match=r"disk full: .* MiB free on"):
            await store.check_writes(timeout=5, min_free_bytes=2**62)
    finally:
        await store.close()


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb in a temp dir, a free port), so it can be
    restarted without touching the shared server. Run as ``postgres`` when the test runs as root
    (initdb refuses root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        assert found, "PostgreSQL's server binaries (pg_ctl, initdb) are needed"
        self.bin = found[-1].parent
        # not under pytest's tmp_path: user postgres could not reach into root's directories
        self.dir = Path(tempfile.mkdtemp(prefix="chainsense-pg-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "root")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://root@127.0.0.1:{self.port}/postgres"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60
        )

    def ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"),
            "-m", "fast", "-w", action,
        )  # fmt: skip


@pytest.mark.postgres
@pytest.mark.slow
async def test_writes_during_a_postgresql_restart_are_unavailable_never_errors() -> None:
    """The issue's fault: PostgreSQL restarted under load gave 500s. Every write that fails
    across a real restart must be StoreUnavailableError (503 + Retry-After), and writes work
    again once it is back."""
    server = PrivatePostgres()
    try:
        server.ctl("start")
        store = await Store.open(server.url)
    except BaseException:
        server.remove()
        raise
    outcomes: dict[str, int] = {}
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await store.api_keys.create(name=f"w{n}-{i}", scope="reader")
                kind = "ok"
            except StoreUnavailableError:
                kind = "unavailable"
                await asyncio.sleep(0.05)
            except Exception as exc:
                kind = f"{type(exc).__name__}: {exc}"
            outcomes[kind] = outcomes.get(kind, 0) + 1

    try:
        writers = [asyncio.create_task(writer(n)) for n in range(8)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.ctl, "stop")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.ctl, "start")
        before = outcomes.get("ok", 0)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*writers)
    finally:
        await store.close()
        server.remove()
    print(f"\noutcomes across a restart: {outcomes}")
    assert outcomes.get("unavailable", 0) > 0, outcomes  # the restart was seen
    assert set(outcomes) == {"ok", "unavailable"}, outcomes  # and never as another error
    assert outcomes["ok"] > before  # writes work again
