"""Ethereum addresses: EIP-55 checksums without eth-utils' per-call overhead."""

from __future__ import annotations

from functools import lru_cache

from chainsense.identity._keccak import keccak256

__all__ = ["address_bytes", "checksum_address", "checksum_from_bytes"]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Maps each hex digit of the hash to 0xFF when its nibble is >= 8 (that letter is upper case).
_UPPER_MASK = bytes.maketrans(b"0123456789abcdef", b"\x00" * 8 + b"\xff" * 8)


def checksum_from_bytes(raw: bytes) -> str:
    """The EIP-55 form of a 20-byte address."""
    lower = raw.hex().encode("ascii")
    mask = int.from_bytes(keccak256(lower).hex()[:40].encode("ascii").translate(_UPPER_MASK))
    mixed = (int.from_bytes(lower) & ~mask) | (int.from_bytes(lower.upper()) & mask)
    return "0x" + mixed.to_bytes(40).decode("ascii")


@lru_cache(maxsize=1 << 16)
def _checksum_of_hex(value: str) -> str:
    digits = value[2:]
    result = checksum_from_bytes(bytes.fromhex(digits))
    if digits != digits.lower() and digits != digits.upper() and digits != result[2:]:
        raise ValueError("mixed-case address with a wrong EIP-55 checksum")
    return result


def checksum_address(value: object) -> str:
    """Parse an address given as ``0x`` + 40 hex digits into its EIP-55 form.

    All-lower-case and all-upper-case hex is accepted as unchecksummed; mixed case must be a
    correct EIP-55 checksum (as ethers' ``getAddress`` does). Raises :class:`ValueError` with a
    reason.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a 0x-prefixed hex string, got {type(value).__name__}")
    if len(value) != 42 or value[:2] != "0x" or not _HEX_DIGITS.issuperset(value[2:]):
        raise ValueError("expected 0x followed by 40 hex digits")
    # A device sends the same address with every reading: a bounded cache of well-formed
    # addresses saves a keccak per reading (an attacker can only churn it, not grow it).
    return _checksum_of_hex(value)


def address_bytes(checksummed: str) -> bytes:
    """The 20 bytes of an address already known to be well formed."""
    return bytes.fromhex(checksummed[2:])
