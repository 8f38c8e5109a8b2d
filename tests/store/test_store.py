"""Opening, migrating, pinging and closing a store; durability of what it acknowledged."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url

from chainsense.errors import ChainSenseError
from chainsense.store import Store, StoreError, StoreUnavailableError, default_url, mask_url
from chainsense.store.migrate import alembic_config, head_revision
from chainsense.store.schema import metadata
from tests.support import free_port

from ._support import address, reading, register
from .conftest import Backend, PostgresDatabases, admin_sql

pytestmark = pytest.mark.timeout(120)


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _schema_diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_open_migrates_a_new_database_and_is_idempotent(backend: Backend) -> None:
    url = await backend.fresh_url()
    first = await Store.open(url)
    try:
        async with first.engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version", *metadata.tables}
            assert await conn.run_sync(_revision) == head_revision()
        await register(first, address(1))
        await first.readings.insert_batch([reading(address(1), 1)])
    finally:
        await first.close()
    again = await Store.open(url)  # migrations already at head: a no-op
    try:
        assert await again.readings.count() == 1
    finally:
        await again.close()
    unmigrated = await Store.open(url, migrate=False)  # at head: accepted as is
    await unmigrated.close()


async def test_migrations_build_exactly_the_declared_schema(backend: Backend) -> None:
    store = await Store.open(await backend.fresh_url())
    try:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await store.close()


def _downgrade_to_base(conn: Connection) -> None:
    command.downgrade(alembic_config(connection=conn), "base")


async def test_migrations_downgrade_and_upgrade_again(backend: Backend) -> None:
    url = await backend.fresh_url()
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(_downgrade_to_base)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}
            assert await conn.run_sync(_revision) is None
    finally:
        await store.close()
    store = await Store.open(url)
    try:
        assert await store.readings.count() == 0
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["postgresql+asyncpg://u:p@h/db", "sqlite+aiosqlite:///x.db"])
def test_migrations_render_offline_sql(url: str) -> None:
    config = alembic_config(url)
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    for table in ("devices", "readings", "api_keys"):
        assert f"CREATE TABLE {table} (" in sql
    assert "uq_readings_device_seq UNIQUE (device, seq)" in sql
    assert ("BIGINT[]" in sql) is url.startswith("postgresql")


async def test_open_without_migrate_refuses_an_old_schema(backend: Backend) -> None:
    url = await backend.fresh_url()
    with pytest.raises(StoreError, match="schema revision none"):
        await Store.open(url, migrate=False)


async def _open_together(urls: list[str]) -> list[Store]:
    """Open a store on each URL at once; every opened store is closed if one open fails."""
    results = await asyncio.gather(*(Store.open(u) for u in urls), return_exceptions=True)
    stores = [r for r in results if isinstance(r, Store)]
    failures = [r for r in results if not isinstance(r, Store)]
    if failures:
        for s in stores:
            await s.close()
        raise failures[0]
    return stores


async def test_concurrent_opens_migrate_once(backend: Backend) -> None:
    # Eight at once, rounds in a row: turning a new SQLite file to WAL answered "database is
    # locked" to one of eight openers in 4 of 40 rounds before the switch was retried.
    for _ in range(3):
        url = await backend.fresh_url()
        if backend.name == "sqlite":  # the directory must exist for the racers to share the file
            Path(make_url(url).database or "").parent.mkdir(parents=True)
        stores = await _open_together([url] * 8)
        try:
            async with stores[0].engine.connect() as conn:
                assert await conn.run_sync(_revision) == head_revision()
        finally:
            for s in stores:
                await s.close()


async def test_opens_of_different_databases_at_once_each_migrate(backend: Backend) -> None:
    # Alembic's running migration lives in module globals: two stores of one process migrating
    # at once (their greenlets interleave on one loop) failed with KeyError: 'script' or "table
    # devices already exists" in every round before migrations were taken one at a time.
    for _ in range(2):
        stores = await _open_together([await backend.fresh_url() for _ in range(4)])
        try:
            for s in stores:
                async with s.engine.connect() as conn:
                    assert await conn.run_sync(_revision) == head_revision()
                    assert await conn.run_sync(_tables) == {"alembic_version", *metadata.tables}
        finally:
            for s in stores:
                await s.close()


async def test_url_is_masked_and_dialect_named(backend: Backend) -> None:
    url = await backend.fresh_url()
    if backend.name == "postgresql":  # trust auth: the password is ignored, but must not leak
        url = url.replace("root@", "root:hunter2@")
    store = await Store.open(url)
    try:
        assert store.dialect == backend.name
        assert "hunter2" not in store.url
        assert "hunter2" not in repr(store)
        if backend.name == "postgresql":
            assert "root:***@" in store.url
        await store.ping()
    finally:
        await store.close()


async def test_open_on_a_dead_url_names_the_masked_url(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "sqlite":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the data directory should be")
        url = f"sqlite+aiosqlite:///{blocker / 'chainsense.db'}"
        expected = str(blocker)
    else:
        port = free_port()
        url = f"postgresql+asyncpg://root:hunter2@127.0.0.1:{port}/nothing"
        expected = f"root:***@127.0.0.1:{port}/nothing"
    with pytest.raises(StoreUnavailableError) as caught:
        await Store.open(url)
    assert isinstance(caught.value, ChainSenseError)
    assert expected in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert caught.value.url == mask_url(url)


async def test_ping_after_close_raises(store: Store) -> None:
    await store.ping()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.ping()


@pytest.mark.postgres
async def test_ping_raises_unavailable_when_the_database_goes_away(
    postgres_databases: PostgresDatabases,
) -> None:
    url = await postgres_databases.create()
    store = await Store.open(url)
    try:
        await store.ping()
        name = make_url(url).database
        await admin_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        with pytest.raises(StoreUnavailableError, match=str(name)):
            await store.ping()
        with pytest.raises(StoreUnavailableError):
            await store.readings.count()
    finally:
        await store.close()


async def test_unsupported_urls_are_refused() -> None:
    for url in ("mysql://root@localhost/x", "sqlite+aiosqlite://", "sqlite:///:memory:", "::"):
        with pytest.raises(StoreError):
            await Store.open(url)


def test_default_url_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/chainsense.db"


async def test_a_new_store_sees_what_insert_batch_acknowledged(
    store: Store, backend: Backend
) -> None:
    device = address(1)
    await register(store, device)
    results = await store.readings.insert_batch([reading(device, s) for s in range(1, 51)])
    ids = [r.reading_id for r in results]
    other = await Store.open(backend.url)
    try:
        for reading_id in ids:
            assert reading_id is not None
            assert await other.readings.get(reading_id) is not None
        assert await other.readings.count() == 50
    finally:
        await other.close()


async def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "chainsense.db"
    store = await Store.open(f"sqlite:///{path}")  # the plain URL gets the async driver
    try:
        assert store.url == f"sqlite+aiosqlite:///{path}"
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30_000
    finally:
        await store.close()
    with sqlite3.connect(path) as plain:  # WAL is a property of the file, not the connection
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
