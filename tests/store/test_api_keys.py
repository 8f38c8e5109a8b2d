"""API keys: shown once, only their SHA-256 at rest, constant-time check, revocation."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from chainsense.store import Scope, Store, hash_key
from chainsense.store.schema import api_keys

pytestmark = pytest.mark.timeout(60)


async def test_create_returns_the_key_once_and_its_record(store: Store) -> None:
    record, key = await store.api_keys.create(name="ingest gateway", scope="operator")
    match = re.fullmatch(r"cs_([0-9a-f]{12})_([A-Za-z0-9_-]+)", key)
    assert match is not None
    assert match[1] == record.prefix
    assert len(match[2]) >= 43  # token_urlsafe(32): 256 bits
    assert (record.name, record.scope, record.revoked_at) == ("ingest gateway", "operator", None)
    assert record.scope is Scope.OPERATOR
    assert record.created_at.tzinfo is not None
    assert await store.api_keys.list() == [record]


async def test_authenticate_accepts_the_key_and_nothing_else(store: Store) -> None:
    record, key = await store.api_keys.create(name="dashboard", scope=Scope.READER)
    other, other_key = await store.api_keys.create(name="admin", scope="admin")
    assert await store.api_keys.authenticate(key) == record
    assert await store.api_keys.authenticate(other_key) == other
    secret = key.split("_", 2)[2]
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (
        f"cs_{record.prefix}_{wrong_secret}",
        f"cs_{other.prefix}_{secret}",  # a real secret under another key's prefix
        f"cs_{'0' * 12}_{secret}",
        key + "x",
        key[:-1],
        key.upper(),
        "",
        "cs__",
        "Bearer " + key,
        "x" * 10_000,
    ):
        assert await store.api_keys.authenticate(bad) is None, bad
    assert await store.api_keys.authenticate(None) is None  # type: ignore[arg-type]


async def test_revoked_keys_no_longer_authenticate(store: Store) -> None:
    record, key = await store.api_keys.create(name="old", scope="admin")
    assert await store.api_keys.revoke(record.id) is True
    assert await store.api_keys.authenticate(key) is None
    assert await store.api_keys.revoke(record.id) is False
    assert await store.api_keys.revoke(10**9) is False
    (listed,) = await store.api_keys.list()
    assert listed.id == record.id
    assert listed.revoked_at is not None
    assert not listed.active


async def test_only_the_hash_is_at_rest(store: Store) -> None:
    keys = [(await store.api_keys.create(name=f"k{i}", scope="reader"))[1] for i in range(3)]
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(api_keys))).all()
    dump = repr(rows)
    for key in keys:
        secret = key.split("_", 2)[2]
        assert secret not in dump
        assert key not in dump
        assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
        assert hash_key(key) in dump
    assert len({row.prefix for row in rows}) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "scope": "root"}, "scope"),
        ({"name": "", "scope": "admin"}, "name"),
        ({"name": "   ", "scope": "admin"}, "name"),
        ({"name": "n" * 201, "scope": "admin"}, "name"),
    ],
)
async def test_create_checks_its_arguments(
    store: Store, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await store.api_keys.create(**kwargs)
    assert await store.api_keys.list() == []
