"""Console sign-in sessions: an API key exchanged for a browser session.

The browser holds a random token (in an HttpOnly cookie); only its SHA-256 is stored, with the
API key it stands for and a CSRF token. A session is valid while it has not expired, has not
been ended (sign-out deletes it) and its API key is not revoked: every lookup joins the key, so
revoking a key ends its sessions at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select

from chainsense.store.engine import Database
from chainsense.store.records import ApiKeyRecord, Scope
from chainsense.store.schema import api_keys, console_sessions

__all__ = ["ConsoleSession", "SessionRepository"]


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    key: ApiKeyRecord
    """The API key the session acts as."""
    csrf_token: str
    """What every state-changing request of this session must carry (``X-CSRF-Token``)."""
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionRepository:
    """Console sessions in one store. Obtain it as ``store.sessions``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, key: ApiKeyRecord, *, lifetime_s: float) -> tuple[str, ConsoleSession]:
        """A new session for the (authenticated) ``key``: the cookie token, and the session."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=lifetime_s)
        stmt = insert(console_sessions).values(
            token_hash=_digest(token),
            api_key_id=key.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=expires,
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)
        return token, ConsoleSession(key, csrf, expires)

    async def get(self, token: str) -> ConsoleSession | None:
        """The live session of ``token``: None if unknown, expired or its key is revoked."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        stmt = (
            select(
                api_keys.c.id,
                api_keys.c.name,
                api_keys.c.prefix,
                api_keys.c.scope,
                api_keys.c.created_at,
                console_sessions.c.csrf_token,
                console_sessions.c.expires_at,
            )
            .join(api_keys, api_keys.c.id == console_sessions.c.api_key_id)
            .where(
                console_sessions.c.token_hash == _digest(token),
                api_keys.c.revoked_at.is_(None),
                console_sessions.c.expires_at > datetime.now(UTC),
            )
        )
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        key_id, name, prefix, scope, created_at, csrf, expires = row
        key = ApiKeyRecord(key_id, name, prefix, Scope(scope), created_at, None)
        return ConsoleSession(key, csrf, expires)

    async def end(self, token: str) -> None:
        """Sign out: the session is deleted (a no-op if it does not exist)."""
        stmt = delete(console_sessions).where(console_sessions.c.token_hash == _digest(token))
        async with self._db.write() as conn:
            await conn.execute(stmt)

    async def purge_expired(self) -> int:
        """Delete expired sessions; how many went."""
        stmt = delete(console_sessions).where(console_sessions.c.expires_at <= datetime.now(UTC))
        async with self._db.write() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount)
