"""DeviceKey: keystore files round-trip, are 0600, never overwritten by accident, and a wrong
passphrase is a clear KeystoreError."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from eth_account import Account

from chainsense.identity import DeviceKey, KeystoreError, ReadingVerifier, keccak256

from ._support import CHAIN_ID, REGISTRY

FAST = 2**10  # scrypt n for tests; the default (2^18) takes ~1 s per open


def test_generate_makes_distinct_valid_keys() -> None:
    a, b = DeviceKey.generate(), DeviceKey.generate()
    assert a != b
    assert a.address == Account.from_key(a.private_key).address
    assert len(a.private_key) == 32


def test_repr_hides_the_secret() -> None:
    key = DeviceKey.generate()
    assert key.private_key.hex() not in repr(key)
    assert key.address in repr(key)


def test_keystore_roundtrip(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    path = key.save(tmp_path / "device.json", "correct horse", work_factor=FAST)
    loaded = DeviceKey.load(path, "correct horse")
    assert loaded == key
    assert loaded.address == key.address
    data = json.loads(path.read_text())
    assert data["version"] == 3
    assert data["crypto"]["kdf"] == "scrypt"
    assert data["address"].lower() == key.address[2:].lower()
    assert key.private_key.hex() not in path.read_text()


def test_keystore_is_readable_by_eth_account(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    path = key.save(tmp_path / "k.json", "pw", kdf="pbkdf2", work_factor=1000)
    assert bytes(Account.decrypt(path.read_text(), "pw")) == key.private_key


def test_eth_account_keystore_is_loadable() -> None:
    secret = os.urandom(32)
    keystore = Account.encrypt(secret, "pw", kdf="scrypt", iterations=FAST)
    assert DeviceKey.from_keystore(keystore, "pw").private_key == secret
    assert DeviceKey.from_keystore(json.dumps(keystore), "pw").private_key == secret


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_file_mode_is_0600(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        first = DeviceKey.generate().save(tmp_path / "a.json", "pw", work_factor=FAST)
        second = DeviceKey.generate().save(first, "pw", work_factor=FAST, overwrite=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(second.stat().st_mode) == 0o600


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    first = DeviceKey.generate()
    first.save(path, "pw", work_factor=FAST)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="exists") as info:
        DeviceKey.generate().save(path, "pw", work_factor=FAST)
    assert info.value.path == path
    assert path.read_bytes() == before
    assert DeviceKey.load(path, "pw") == first


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    DeviceKey.generate().save(path, "pw", work_factor=FAST)
    second = DeviceKey.generate()
    second.save(path, "pw2", work_factor=FAST, overwrite=True)
    assert DeviceKey.load(path, "pw2") == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.json"]  # no temp file left


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = DeviceKey.generate().save(tmp_path / "k.json", "right", work_factor=FAST)
    with pytest.raises(KeystoreError, match="wrong passphrase") as info:
        DeviceKey.load(path, "hunter2-not-it")
    assert info.value.path == path
    assert "hunter2" not in str(info.value)  # the passphrase is never echoed


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="passphrase"):
        DeviceKey.generate().save(tmp_path / "k.json", "", work_factor=FAST)
    assert not (tmp_path / "k.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 3}',
        '{"version": 3, "crypto": {"kdf": "argon9"}}',
    ],
)
def test_malformed_keystore(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeystoreError):
        DeviceKey.load(path, "pw")


def test_keystore_with_mismatched_address_is_refused() -> None:
    keystore = DeviceKey.generate().to_keystore("pw", work_factor=FAST)
    keystore["address"] = DeviceKey.generate().address[2:].lower()
    with pytest.raises(KeystoreError, match="does not match"):
        DeviceKey.from_keystore(keystore, "pw")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read"):
        DeviceKey.load(tmp_path / "absent.json", "pw")
    with pytest.raises(KeystoreError, match="cannot write"):
        DeviceKey.generate().save(tmp_path / "no" / "dir.json", "pw", work_factor=FAST)


def test_loaded_key_signs_verifiable_readings(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    loaded = DeviceKey.load(key.save(tmp_path / "k.json", "pw", work_factor=FAST), "pw")
    reading = loaded.reading(seq=1, timestamp=1, schema=keccak256(b"meter.v1"), values=(-3,))
    signature = loaded.sign(reading, CHAIN_ID, REGISTRY)
    assert ReadingVerifier(CHAIN_ID, REGISTRY).recover(reading, signature) == key.address
