"""Errors of the store.

::

    ChainSenseError                 (chainsense.errors)
    └── StoreError                  the database refused or failed an operation (bad schema
        │                           version, unsupported URL, unexpected driver error, ...)
        └── StoreUnavailableError   the database does not answer (down, unreachable, locked
                                    past the busy timeout); carries the URL, password masked

Invalid arguments (a ``seq`` of 2^63 or more, a 64-byte signature, a malformed address) are
programming errors of the caller and raise :class:`ValueError` instead: the ingest layer checks
them first and answers 4xx.
"""

from __future__ import annotations

from chainsense.errors import ChainSenseError

__all__ = ["StoreError", "StoreUnavailableError"]


class StoreError(ChainSenseError):
    """The database refused or failed an operation."""


class StoreUnavailableError(StoreError):
    """The database did not answer. ``url`` has its password masked."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database at {url} is unavailable: {reason}")
        self.url = url
        self.reason = reason
