"""The store conformance suite runs every test on SQLite and on PostgreSQL.

SQLite: a fresh file under ``tmp_path`` per test. PostgreSQL: the local server (started if it is
down; the tests fail, never skip, when it cannot be reached), one ``chainsense_test_<random>``
database per session whose tables are emptied before each test, and fresh databases for the
tests that need an empty one; all of them are dropped at the end of the session.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from chainsense.store import Store
from chainsense.store.schema import metadata
from tests.support import admin_sql, ensure_postgres, temp_postgres_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class PostgresDatabases:
    """Fresh databases created during the session, dropped at its end."""

    names: list[str] = field(default_factory=list)

    async def create(self) -> str:
        name = f"chainsense_test_{secrets.token_hex(4)}"
        await admin_sql(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return f"postgresql+asyncpg://root@127.0.0.1:5432/{name}"


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    ensure_postgres()
    databases = PostgresDatabases()
    yield databases
    for name in databases.names:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's shared PostgreSQL database."""
    with temp_postgres_database() as url:
        yield url


@dataclass
class Backend:
    """One database kind, as the tests see it."""

    name: str
    tmp_path: Path
    shared_url: str | None = None
    postgres: PostgresDatabases | None = None
    url: str = ""
    """The URL of the test's ``store`` (set by that fixture)."""
    _count: int = 0

    async def fresh_url(self) -> str:
        """The URL of a new, empty database."""
        if self.postgres is not None:
            return await self.postgres.create()
        self._count += 1
        return f"sqlite+aiosqlite:///{self.tmp_path / f'fresh{self._count}' / 'chainsense.db'}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    return Backend(
        "postgresql",
        tmp_path,
        shared_url=request.getfixturevalue("postgres_url"),
        postgres=request.getfixturevalue("postgres_databases"),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def store(backend: Backend) -> AsyncIterator[Store]:
    """An open, migrated, empty store on ``backend``; ``backend.url`` is its URL."""
    if backend.shared_url is None:
        backend.url = f"sqlite+aiosqlite:///{backend.tmp_path / 'data' / 'chainsense.db'}"
    else:
        backend.url = backend.shared_url
    opened = await Store.open(backend.url)
    try:
        if backend.shared_url is not None:
            async with opened.engine.begin() as conn:
                tables = ", ".join(metadata.tables)
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        yield opened
    finally:
        await opened.close()
