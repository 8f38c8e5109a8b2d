"""Device identity: keys, EIP-712 typing of readings, and fast signature recovery.

A device is an Ethereum address; it signs each :class:`Reading` as EIP-712 typed data in the
ChainSense domain of one DeviceRegistry, and :class:`ReadingVerifier` recovers the signer at
libsecp256k1 speed. See :mod:`chainsense.identity.eip712` for the exact acceptance rules.
"""

from chainsense.identity._keccak import KECCAK_BACKEND, keccak256
from chainsense.identity.eip712 import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    READING_TYPE,
    READING_TYPEHASH,
    ReadingVerifier,
    did_pkh,
    domain_separator,
    reading_digest,
    sign_reading,
    struct_hash,
    typed_data,
    typed_data_digest,
)
from chainsense.identity.errors import (
    IdentityError,
    InvalidDomainError,
    InvalidKeyError,
    InvalidReadingError,
    InvalidSignatureError,
    KeystoreError,
)
from chainsense.identity.keys import DeviceKey
from chainsense.identity.reading import Reading
from chainsense.identity.schema_id import schema_id

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "KECCAK_BACKEND",
    "READING_TYPE",
    "READING_TYPEHASH",
    "DeviceKey",
    "IdentityError",
    "InvalidDomainError",
    "InvalidKeyError",
    "InvalidReadingError",
    "InvalidSignatureError",
    "KeystoreError",
    "Reading",
    "ReadingVerifier",
    "did_pkh",
    "domain_separator",
    "keccak256",
    "reading_digest",
    "schema_id",
    "sign_reading",
    "struct_hash",
    "typed_data",
    "typed_data_digest",
]
