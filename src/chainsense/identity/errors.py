"""Errors of the identity layer.

::

    ChainSenseError
    └── IdentityError
        ├── InvalidReadingError     a reading field is out of range or malformed; names the field
        ├── InvalidSignatureError   a signature is malformed or recovers no key; says why
        ├── InvalidDomainError      an EIP-712 domain parameter (chain id, contract) is malformed
        ├── InvalidKeyError         bytes that are not a secp256k1 private key
        └── KeystoreError           a keystore file cannot be written, read or decrypted
"""

from __future__ import annotations

from pathlib import Path

from chainsense.errors import ChainSenseError

__all__ = [
    "IdentityError",
    "InvalidDomainError",
    "InvalidKeyError",
    "InvalidReadingError",
    "InvalidSignatureError",
    "KeystoreError",
]


class IdentityError(ChainSenseError):
    """Something about device identity, readings or their signatures is wrong."""


class InvalidReadingError(IdentityError):
    """A reading field is out of range or malformed.

    ``field`` is the wire name of the field (``device``, ``seq``, ``timestamp``, ``schema``,
    ``values``, or ``values[3]`` for one element), so the API can point at it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid reading field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class InvalidSignatureError(IdentityError):
    """A signature is malformed (length, v, r, s) or no public key can be recovered from it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid signature: {reason}")
        self.reason = reason


class InvalidDomainError(IdentityError):
    """An EIP-712 domain parameter is malformed; ``field`` is ``chainId`` or
    ``verifyingContract``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid EIP-712 domain field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class InvalidKeyError(IdentityError):
    """Bytes that are not a valid secp256k1 private key (32 bytes, 0 < key < n)."""


class KeystoreError(IdentityError):
    """A keystore file cannot be written, read or decrypted (wrong passphrase included)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"keystore {path}: {reason}")
        self.path = Path(path)
        self.reason = reason
