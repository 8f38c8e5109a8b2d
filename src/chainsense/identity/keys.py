"""Device keys, kept in encrypted V3 keystore files (the Ethereum "UTC JSON" format).

The passphrase is always the caller's argument: this module never reads the environment (the CLI
takes it from ``CHAINSENSE_*`` settings and passes it in). Files are written with mode 0600 and
never overwritten unless asked to.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from coincurve import PrivateKey

from chainsense.identity._address import checksum_address, checksum_from_bytes
from chainsense.identity._keccak import keccak256
from chainsense.identity.eip712 import _private_key, did_pkh, sign_reading
from chainsense.identity.errors import InvalidKeyError, InvalidReadingError, KeystoreError
from chainsense.identity.reading import Reading

__all__ = ["DeviceKey"]

_FILE_MODE = 0o600


class DeviceKey:
    """A device's secp256k1 key; its Ethereum address is the device's identity.

    >>> key = DeviceKey(bytes.fromhex("01" * 32))
    >>> key.address
    '0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1'
    """

    __slots__ = ("_address", "_secret")

    def __init__(self, private_key: bytes) -> None:
        """Wrap a raw 32-byte private key; raises :class:`InvalidKeyError` if it is not one."""
        secret = _private_key(private_key)
        self._secret = private_key
        public = secret.public_key.format(compressed=False)
        self._address = checksum_from_bytes(keccak256(public[1:])[12:])

    @classmethod
    def generate(cls) -> DeviceKey:
        """A new random key (from the operating system's CSPRNG)."""
        return cls(PrivateKey().secret)

    @property
    def address(self) -> str:
        """The EIP-55 address: the device id in readings and in the DeviceRegistry."""
        return self._address

    @property
    def private_key(self) -> bytes:
        """The raw 32-byte private key. Handle with care; never log it."""
        return self._secret

    def did(self, chain_id: int) -> str:
        """``did:pkh:eip155:<chain_id>:<address>``."""
        return did_pkh(chain_id, self._address)

    def __repr__(self) -> str:
        return f"DeviceKey(address={self._address!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceKey) and hmac.compare_digest(other._secret, self._secret)

    def __hash__(self) -> int:
        return hash(self._address)

    # ----------------------------------------------------------------------------------------
    # Signing

    def reading(
        self, *, seq: int, timestamp: int, schema: bytes, values: tuple[int, ...] = ()
    ) -> Reading:
        """A :class:`Reading` from this device (``device`` is this key's address)."""
        return Reading(
            device=self._address, seq=seq, timestamp=timestamp, schema=schema, values=values
        )

    def sign(self, reading: Reading, chain_id: int, verifying_contract: str) -> bytes:
        """Sign ``reading`` (65 bytes ``r || s || v``); see :func:`sign_reading`.

        Raises :class:`InvalidReadingError` (field ``device``) when the reading names another
        device: the registry accepts a reading only when its signer is ``reading.device``.
        """
        if reading.device != self._address:
            raise InvalidReadingError(
                "device", f"{reading.device} is not this key's address {self._address}"
            )
        return sign_reading(self._secret, reading, chain_id, verifying_contract)

    # ----------------------------------------------------------------------------------------
    # Keystore files

    def to_keystore(
        self,
        passphrase: str,
        *,
        kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
        work_factor: int | None = None,
    ) -> dict[str, Any]:
        """The V3 keystore JSON of this key, encrypted with ``passphrase``.

        ``work_factor`` is scrypt's ``n`` or pbkdf2's iteration count; the default is
        eth-account's (scrypt n = 2^18: ~1 s and 256 MB to open, on purpose).
        """
        from eth_account import Account  # imported here: it takes ~1 s, and only keystores need it

        if not isinstance(passphrase, str) or not passphrase:
            raise KeystoreError("<memory>", "the passphrase must be a non-empty string")
        return Account.encrypt(self._secret, passphrase, kdf=kdf, iterations=work_factor)

    @classmethod
    def from_keystore(
        cls, keystore: dict[str, Any] | str, passphrase: str, *, source: str = "<memory>"
    ) -> DeviceKey:
        """Decrypt a V3 keystore (a dict or its JSON text).

        Raises :class:`KeystoreError` on a wrong passphrase, a malformed keystore, or a keystore
        whose ``address`` field does not match the key inside.
        """
        from eth_account import Account  # imported here: it takes ~1 s, and only keystores need it

        try:
            data = json.loads(keystore) if isinstance(keystore, str) else keystore
        except ValueError as exc:
            raise KeystoreError(source, f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise KeystoreError(source, "not a keystore object")
        if not isinstance(passphrase, str):
            raise KeystoreError(source, "the passphrase must be a string")
        try:
            secret = bytes(Account.decrypt(data, passphrase))
        except ValueError as exc:
            if "MAC mismatch" in str(exc):
                raise KeystoreError(source, "wrong passphrase (MAC mismatch)") from None
            raise KeystoreError(source, f"malformed keystore: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise KeystoreError(source, f"malformed keystore: {exc!r}") from None
        try:
            key = cls(secret)
        except InvalidKeyError as exc:
            raise KeystoreError(source, f"decrypted data is not a private key: {exc}") from None
        declared = data.get("address")
        if declared is not None:
            try:
                matches = checksum_address(f"0x{str(declared).removeprefix('0x')}") == key.address
            except ValueError:
                matches = False
            if not matches:
                raise KeystoreError(source, f"address field {declared!r} does not match the key")
        return key

    def save(
        self,
        path: Path | str,
        passphrase: str,
        *,
        overwrite: bool = False,
        kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
        work_factor: int | None = None,
    ) -> Path:
        """Write this key, encrypted, to ``path`` (mode 0600) and return the path.

        Refuses (:class:`KeystoreError`) if the file exists, unless ``overwrite``; an overwrite
        replaces the file atomically. The parent directory must exist.
        """
        path = Path(path)
        payload = json.dumps(
            self.to_keystore(passphrase, kdf=kdf, work_factor=work_factor), indent=2
        ).encode()
        try:
            if overwrite:
                _write_replace(path, payload)
            else:
                _write_new(path, payload)
        except FileExistsError:
            raise KeystoreError(path, "file exists; pass overwrite=True to replace it") from None
        except OSError as exc:
            raise KeystoreError(path, f"cannot write: {exc.strerror or exc}") from None
        return path

    @classmethod
    def load(cls, path: Path | str, passphrase: str) -> DeviceKey:
        """Read and decrypt the keystore file at ``path``; :class:`KeystoreError` on failure."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeystoreError(path, f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise KeystoreError(path, "not UTF-8 JSON") from None
        return cls.from_keystore(text, passphrase, source=str(path))


def _write_all(fd: int, payload: bytes) -> None:
    if hasattr(os, "fchmod"):  # umask must not loosen nor tighten the mode
        os.fchmod(fd, _FILE_MODE)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _write_new(path: Path, payload: bytes) -> None:
    """Create ``path`` exclusively (O_EXCL: no race with another writer), 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, _FILE_MODE)
    try:
        _write_all(fd, payload)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def _write_replace(path: Path, payload: bytes) -> None:
    """Write a 0600 temp file beside ``path`` and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _write_all(fd, payload)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
