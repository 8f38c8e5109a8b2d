"""API keys: shown once, stored as a SHA-256 digest, looked up by a public prefix.

A key reads ``cs_<prefix>_<secret>``: ``prefix`` is 12 random hex digits, public and unique, so a
key is found with one indexed lookup; ``secret`` is ``secrets.token_urlsafe(32)`` (256 bits).
Only ``sha256(key)`` is stored: the random part is far too large to guess, so a slow password
hash would add cost and no safety. The digest is compared in constant time.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from chainsense.store.engine import Database
from chainsense.store.errors import StoreError
from chainsense.store.records import ApiKeyRecord, Scope
from chainsense.store.schema import api_keys

__all__ = ["ApiKeyRepository", "hash_key"]

_KEY = re.compile(r"cs_([0-9a-f]{12})_([A-Za-z0-9_-]{43,128})")
_SECRET_BYTES = 32
_MAX_NAME = 200
_DUMMY_HASH = "0" * 64

_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.scope,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
)


def hash_key(key: str) -> str:
    """What is stored for ``key``: its SHA-256, as 64 lower-case hex digits."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyRepository:
    """API keys in one store. Obtain it as ``store.api_keys``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, *, name: str, scope: Scope | str) -> tuple[ApiKeyRecord, str]:
        """A new key: its record, and the key itself (shown once; it cannot be recovered)."""
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
            raise ValueError(f"name: expected 1..{_MAX_NAME} characters, got {name!r:.60}")
        try:
            checked_scope = Scope(scope)
        except ValueError:
            allowed = ", ".join(s.value for s in Scope)
            raise ValueError(f"scope: expected one of {allowed}, got {scope!r}") from None
        for _attempt in range(3):
            prefix = secrets.token_hex(6)
            key = f"cs_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
            created_at = datetime.now(UTC)
            stmt = (
                insert(api_keys)
                .values(
                    name=name,
                    prefix=prefix,
                    key_hash=hash_key(key),
                    scope=checked_scope.value,
                    created_at=created_at,
                )
                .returning(api_keys.c.id)
            )
            try:
                async with self._db.write() as conn:
                    key_id = (await conn.execute(stmt)).scalar_one()
            except StoreError as exc:  # a prefix collision (2^-48 per pair): draw again
                if isinstance(exc.__cause__, IntegrityError):
                    continue
                raise
            record = ApiKeyRecord(key_id, name, prefix, checked_scope, created_at, None)
            return record, key
        raise StoreError("could not draw a unique API key prefix")

    async def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The active key matching ``key``; None if it is malformed, unknown or revoked."""
        match = _KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            return None
        stmt = select(*_COLUMNS, api_keys.c.key_hash).where(api_keys.c.prefix == match[1])
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        stored = _DUMMY_HASH if row is None else str(row[6])
        if not hmac.compare_digest(stored, hash_key(key)) or row is None:
            return None
        record = _record(row)
        return record if record.active else None

    async def list(self) -> builtins.list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        async with self._db.read() as conn:
            rows = await conn.execute(select(*_COLUMNS).order_by(api_keys.c.id))
            return [_record(row) for row in rows]

    async def revoke(self, key_id: int) -> bool:
        """Revoke a key: True if it was active, False if it is unknown or already revoked."""
        stmt = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        async with self._db.write() as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1


def _record(row: Sequence[Any]) -> ApiKeyRecord:
    key_id, name, prefix, scope, created_at, revoked_at = row[:6]
    return ApiKeyRecord(key_id, name, prefix, Scope(scope), created_at, revoked_at)
