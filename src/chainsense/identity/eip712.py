"""EIP-712 typing of readings, and fast signature recovery.

The signed struct (a public wire format; ``DeviceRegistry.sol`` defines the same)::

    Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)

in the domain ``{name: "ChainSense", version: "1", chainId, verifyingContract: <DeviceRegistry>}``
(:class:`Reading` itself, its validation and JSON form live in :mod:`chainsense.identity.reading`).

Signatures are 65 bytes ``r || s || v`` and are accepted exactly when OpenZeppelin's
``ECDSA.tryRecover`` (used by ``DeviceRegistry.verifyReading``) accepts them, so a reading the
platform takes is one any contract can verify too:

- ``v`` must be 27 or 28. The 0/1 form some libraries emit is refused, as ``ecrecover`` refuses it;
  eth-account, ethers and viem all produce 27/28.
- ``0 < r < n`` and ``0 < s <= n/2``: the high-s twin of a signature is refused (malleability).
- 64-byte EIP-2098 compact signatures are refused (OpenZeppelin 5 refuses them too).

:class:`ReadingVerifier` computes the domain separator once and then costs one libsecp256k1
recovery plus five native keccak256 calls per reading; eth-account is not on that path.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from coincurve import PrivateKey, PublicKey

from chainsense.identity._address import checksum_address, checksum_from_bytes
from chainsense.identity._keccak import keccak256
from chainsense.identity.errors import (
    InvalidDomainError,
    InvalidKeyError,
    InvalidReadingError,
    InvalidSignatureError,
)
from chainsense.identity.reading import INT64_MAX, INT64_MIN, UINT64_MAX, Reading
from chainsense.identity.schema_id import schema_id

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "EIP712_DOMAIN_TYPE",
    "INT64_MAX",
    "INT64_MIN",
    "READING_TYPE",
    "READING_TYPEHASH",
    "SECP256K1_N",
    "UINT64_MAX",
    "Reading",
    "ReadingVerifier",
    "did_pkh",
    "domain_separator",
    "reading_digest",
    "schema_id",
    "sign_reading",
    "struct_hash",
    "typed_data",
    "typed_data_digest",
]

DOMAIN_NAME = "ChainSense"
DOMAIN_VERSION = "1"
READING_TYPE = "Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)"
EIP712_DOMAIN_TYPE = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
READING_TYPEHASH = keccak256(READING_TYPE.encode("ascii"))
_DOMAIN_TYPEHASH = keccak256(EIP712_DOMAIN_TYPE.encode("ascii"))

_UINT256_MAX = 2**256 - 1

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2  # OpenZeppelin's 0x7FFF...5D576E7357A4501DDFE92F46681B20A0

_STRUCT_PREFIX = READING_TYPEHASH + bytes(12)  # typehash, then the address left-padded to 32
_EMPTY_VALUES_HASH = keccak256(b"")
_SIGNATURE_LENGTH = 65


# --------------------------------------------------------------------------------------------
# Hashing


def _checked_domain(chain_id: int, verifying_contract: str) -> tuple[int, str]:
    if type(chain_id) is not int or not 0 < chain_id <= _UINT256_MAX:
        raise InvalidDomainError("chainId", f"expected a positive integer, got {chain_id!r}")
    try:
        contract = checksum_address(verifying_contract)
    except ValueError as exc:
        raise InvalidDomainError("verifyingContract", str(exc)) from None
    return chain_id, contract


def domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    """``hashStruct(EIP712Domain)`` for ChainSense on ``chain_id`` and the registry address.

    Equal to ``DeviceRegistry.DOMAIN_SEPARATOR()``. Cached per domain (there are few).
    """
    return _domain_separator(*_checked_domain(chain_id, verifying_contract))


@lru_cache(maxsize=256)
def _domain_separator(chain_id: int, contract: str) -> bytes:
    return keccak256(
        _DOMAIN_TYPEHASH
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(DOMAIN_VERSION.encode())
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(contract[2:])
    )


def struct_hash(reading: Reading) -> bytes:
    """``hashStruct(reading)``, equal to ``DeviceRegistry.hashReading``; ``int64[]`` is the
    keccak256 of the concatenated 32-byte two's-complement words."""
    values = reading.values
    values_hash = (
        keccak256(b"".join([v.to_bytes(32, "big", signed=True) for v in values]))
        if values
        else _EMPTY_VALUES_HASH
    )
    return keccak256(
        _STRUCT_PREFIX
        + bytes.fromhex(reading.device[2:])
        + reading.seq.to_bytes(32, "big")
        + reading.timestamp.to_bytes(32, "big")
        + reading.schema
        + values_hash
    )


def typed_data_digest(domain_sep: bytes, struct_hash: bytes) -> bytes:
    """The EIP-712 digest ``keccak256(0x1901 || domainSeparator || hashStruct)``."""
    if len(domain_sep) != 32 or len(struct_hash) != 32:
        raise ValueError("domain separator and struct hash must be 32 bytes each")
    return keccak256(b"\x19\x01" + domain_sep + struct_hash)


def reading_digest(reading: Reading, chain_id: int, verifying_contract: str) -> bytes:
    """The digest a device signs; equal to ``DeviceRegistry.readingDigest``."""
    return keccak256(
        b"\x19\x01" + domain_separator(chain_id, verifying_contract) + struct_hash(reading)
    )


# --------------------------------------------------------------------------------------------
# Signatures


def _recoverable(signature: bytes) -> bytes:
    """Check ``r || s || v`` as OpenZeppelin does; return libsecp256k1's ``r || s || recid``."""
    if type(signature) is not bytes:
        if not isinstance(signature, bytes | bytearray | memoryview):
            raise InvalidSignatureError(f"expected bytes, got {type(signature).__name__}")
        signature = bytes(signature)
    if len(signature) != _SIGNATURE_LENGTH:
        raise InvalidSignatureError(
            f"expected {_SIGNATURE_LENGTH} bytes (r, s, v), got {len(signature)}"
        )
    v = signature[64]
    if v != 27 and v != 28:
        raise InvalidSignatureError(f"v must be 27 or 28, got {v}")
    r = int.from_bytes(signature[:32])
    if not 0 < r < SECP256K1_N:
        raise InvalidSignatureError("r is zero or not below the curve order")
    s = int.from_bytes(signature[32:64])
    if s == 0:
        raise InvalidSignatureError("s is zero")
    if s > _HALF_N:
        raise InvalidSignatureError("s is in the upper half of the curve order (malleable)")
    return signature[:64] + (b"\x00" if v == 27 else b"\x01")


def _recover_address(digest: bytes, signature: bytes) -> bytes:
    compact = _recoverable(signature)
    try:
        public = PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except ValueError:
        raise InvalidSignatureError("no public key can be recovered from it") from None
    return keccak256(public.format(compressed=False)[1:])[12:]


class ReadingVerifier:
    """Recovers reading signers for one domain (chain id + DeviceRegistry address).

    Build one per domain and share it: it is immutable and thread-safe. Nothing is cached per
    reading. :meth:`recover` raises :class:`InvalidSignatureError` with the reason; :meth:`verify`
    is a predicate that never raises for a bad signature, like ``DeviceRegistry.verifyReading``
    (minus the registry check, which is the caller's).
    """

    __slots__ = ("_prefix", "chain_id", "domain_separator", "verifying_contract")

    def __init__(self, chain_id: int, verifying_contract: str) -> None:
        self.chain_id, self.verifying_contract = _checked_domain(chain_id, verifying_contract)
        self.domain_separator = _domain_separator(self.chain_id, self.verifying_contract)
        self._prefix = b"\x19\x01" + self.domain_separator

    def __repr__(self) -> str:
        return (
            f"ReadingVerifier(chain_id={self.chain_id}, "
            f"verifying_contract={self.verifying_contract!r})"
        )

    def digest(self, reading: Reading) -> bytes:
        """The EIP-712 digest of ``reading`` in this domain."""
        return keccak256(self._prefix + struct_hash(reading))

    def recover_bytes(self, reading: Reading, signature: bytes) -> bytes:
        """The 20-byte address that signed ``reading`` (no checksum formatting)."""
        return _recover_address(keccak256(self._prefix + struct_hash(reading)), signature)

    def recover(self, reading: Reading, signature: bytes) -> str:
        """The EIP-55 address that signed ``reading``. Raises :class:`InvalidSignatureError`.

        A well-formed signature over other data (another field, chain or contract) recovers to
        some other address: compare with ``reading.device``, or use :meth:`verify`.
        """
        return checksum_from_bytes(
            _recover_address(keccak256(self._prefix + struct_hash(reading)), signature)
        )

    def recover_struct_bytes(self, struct_hash: bytes, signature: bytes) -> bytes:
        """:meth:`recover_struct` as the raw 20 bytes (no checksum formatting: one keccak less)."""
        if len(struct_hash) != 32:
            raise ValueError(f"a struct hash is 32 bytes, got {len(struct_hash)}")
        return _recover_address(keccak256(self._prefix + struct_hash), signature)

    def recover_struct(self, struct_hash: bytes, signature: bytes) -> str:
        """:meth:`recover` from a precomputed ``hashStruct(reading)`` (for callers that keep
        the struct hash anyway, as the ingest does for storage and Merkle leaves)."""
        if len(struct_hash) != 32:
            raise ValueError(f"a struct hash is 32 bytes, got {len(struct_hash)}")
        return checksum_from_bytes(
            _recover_address(keccak256(self._prefix + struct_hash), signature)
        )

    def verify(self, reading: Reading, signature: bytes) -> bool:
        """Whether ``signature`` is valid and was made by ``reading.device``."""
        try:
            signer = self.recover_bytes(reading, signature)
        except InvalidSignatureError:
            return False
        return signer == bytes.fromhex(reading.device[2:])

    def recover_many(
        self, items: Iterable[tuple[Reading, bytes]]
    ) -> list[str | InvalidSignatureError]:
        """:meth:`recover` over many ``(reading, signature)`` pairs, in order; a bad signature
        yields its :class:`InvalidSignatureError` in place of an address instead of raising."""
        prefix = self._prefix
        results: list[str | InvalidSignatureError] = []
        append = results.append
        for reading, signature in items:
            try:
                append(
                    checksum_from_bytes(
                        _recover_address(keccak256(prefix + struct_hash(reading)), signature)
                    )
                )
            except InvalidSignatureError as exc:
                append(exc)
        return results


def _private_key(private_key: bytes) -> PrivateKey:
    if type(private_key) is not bytes or len(private_key) != 32:
        raise InvalidKeyError("a private key is 32 bytes")
    if not 0 < int.from_bytes(private_key) < SECP256K1_N:
        raise InvalidKeyError("a private key must be in [1, n-1]")
    return PrivateKey(private_key)


def sign_reading(
    private_key: bytes, reading: Reading, chain_id: int, verifying_contract: str
) -> bytes:
    """Sign ``reading`` as EIP-712 typed data: 65 bytes ``r || s || v``, ``v`` in {27, 28}.

    Deterministic (RFC 6979) and low-s, as libsecp256k1 always produces, so the result is
    byte-identical to eth-account's and ethers' signatures of the same typed data.
    """
    digest = reading_digest(reading, chain_id, verifying_contract)
    compact = _private_key(private_key).sign_recoverable(digest, hasher=None)
    return compact[:64] + bytes((compact[64] + 27,))


# --------------------------------------------------------------------------------------------
# Interop


def typed_data(reading: Reading, chain_id: int, verifying_contract: str) -> dict[str, Any]:
    """The full EIP-712 message, as eth-account's ``sign_typed_data(full_message=...)``,
    ethers' ``signTypedData`` (domain, types minus EIP712Domain, message) and viem take it.

    ``schema`` is 0x-hex, ``values`` and the integers are Python ints (serialise big ones as
    strings for JavaScript yourself, or use :meth:`Reading.to_json`).
    """
    chain_id, contract = _checked_domain(chain_id, verifying_contract)
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Reading": [
                {"name": "device", "type": "address"},
                {"name": "seq", "type": "uint64"},
                {"name": "timestamp", "type": "uint64"},
                {"name": "schema", "type": "bytes32"},
                {"name": "values", "type": "int64[]"},
            ],
        },
        "primaryType": "Reading",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "message": {
            "device": reading.device,
            "seq": reading.seq,
            "timestamp": reading.timestamp,
            "schema": "0x" + reading.schema.hex(),
            "values": list(reading.values),
        },
    }


def did_pkh(chain_id: int, address: str) -> str:
    """The device's DID: ``did:pkh:eip155:<chainId>:<EIP-55 address>``.

    Raises :class:`InvalidDomainError` for a bad chain id and :class:`InvalidReadingError`
    (field ``device``) for a bad address.
    """
    if type(chain_id) is not int or chain_id <= 0:
        raise InvalidDomainError("chainId", f"expected a positive integer, got {chain_id!r}")
    try:
        checksummed = checksum_address(address)
    except ValueError as exc:
        raise InvalidReadingError("device", str(exc)) from None
    return f"did:pkh:eip155:{chain_id}:{checksummed}"
