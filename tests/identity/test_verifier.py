"""ReadingVerifier: recovers what eth-account and sign_reading sign; refuses what OpenZeppelin's
ECDSA refuses; a signature over anything else recovers another address."""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from chainsense.identity import (
    DeviceKey,
    InvalidKeyError,
    InvalidReadingError,
    InvalidSignatureError,
    Reading,
    ReadingVerifier,
    keccak256,
    sign_reading,
    struct_hash,
    typed_data,
)
from chainsense.identity._keccak import keccak256_reference
from chainsense.identity.eip712 import SECP256K1_N

from ._support import (
    CHAIN_ID,
    OTHER_REGISTRY,
    REGISTRY,
    ReadingFactory,
    high_s_twin,
    with_v,
)


def test_recovers_eth_account_and_own_signatures(
    make_readings: ReadingFactory, verifier: ReadingVerifier
) -> None:
    for key, reading in make_readings(3):
        ours = sign_reading(key.private_key, reading, CHAIN_ID, REGISTRY)
        full = typed_data(reading, CHAIN_ID, REGISTRY)
        theirs = bytes(Account.sign_typed_data(key.private_key, full_message=full).signature)
        assert ours == theirs
        assert len(ours) == 65
        assert ours[64] in (27, 28)
        assert int.from_bytes(ours[32:64]) <= SECP256K1_N // 2  # low-s
        assert verifier.recover(reading, ours) == key.address
        assert verifier.recover_bytes(reading, ours) == bytes.fromhex(key.address[2:])
        assert verifier.verify(reading, ours)


def test_recover_struct_uses_a_precomputed_struct_hash(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    signature = key.sign(reading, CHAIN_ID, REGISTRY)
    assert verifier.recover_struct(struct_hash(reading), signature) == key.address
    with pytest.raises(InvalidSignatureError, match="upper half"):
        verifier.recover_struct(struct_hash(reading), high_s_twin(signature))
    with pytest.raises(ValueError, match="32 bytes"):
        verifier.recover_struct(struct_hash(reading)[:31], signature)


def test_digest_matches_module_functions(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    from chainsense.identity import reading_digest

    _, reading = sample
    assert verifier.digest(reading) == reading_digest(reading, CHAIN_ID, REGISTRY)
    assert verifier.chain_id == CHAIN_ID
    assert verifier.verifying_contract == REGISTRY
    assert "31337" in repr(verifier)


def test_verifier_normalises_contract_address() -> None:
    assert ReadingVerifier(CHAIN_ID, REGISTRY.lower()).verifying_contract == REGISTRY


def test_recover_many_keeps_order_and_reports_errors(
    make_readings: ReadingFactory, verifier: ReadingVerifier
) -> None:
    items = [
        (reading, key.sign(reading, CHAIN_ID, REGISTRY))
        for key, reading in make_readings(4, count=40)
    ]
    items[5] = (items[5][0], items[5][1][:64])
    results = verifier.recover_many(items)
    assert len(results) == len(items)
    for i, ((reading, _), result) in enumerate(zip(items, results, strict=True)):
        if i == 5:
            assert isinstance(result, InvalidSignatureError)
        else:
            assert result == reading.device
    assert verifier.recover_many([]) == []
    assert verifier.recover_many(iter(items[:2])) == results[:2]


# --------------------------------------------------------------------------------------------
# Malformed signatures: refused with a reason, exactly as OpenZeppelin ECDSA.tryRecover would.


def _malformed_cases(signature: bytes) -> list[tuple[str, Any, str]]:
    r_zero = bytes(32) + signature[32:]
    s_zero = signature[:32] + bytes(32) + signature[64:]
    r_n = SECP256K1_N.to_bytes(32) + signature[32:]
    r_max = b"\xff" * 32 + signature[32:]
    return [
        ("empty", b"", "65 bytes"),
        ("64 bytes (EIP-2098 compact)", signature[:64], "65 bytes"),
        ("66 bytes", signature + b"\x00", "65 bytes"),
        ("v = 0", with_v(signature, 0), "v must be 27 or 28"),
        ("v = 1", with_v(signature, 1), "v must be 27 or 28"),
        ("v = 29", with_v(signature, 29), "v must be 27 or 28"),
        ("v = 37 (EIP-155 style)", with_v(signature, 37), "v must be 27 or 28"),
        ("high s", high_s_twin(signature), "upper half"),
        ("r = 0", r_zero, "r is zero"),
        ("r = n", r_n, "r is zero or not below"),
        ("r = 2^256 - 1", r_max, "r is zero or not below"),
        ("s = 0", s_zero, "s is zero"),
        ("a hex string", "0x" + signature.hex(), "expected bytes"),
        ("None", None, "expected bytes"),
    ]


def test_malformed_signatures_are_refused(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    good = key.sign(reading, CHAIN_ID, REGISTRY)
    for name, bad, reason in _malformed_cases(good):
        with pytest.raises(InvalidSignatureError, match=reason) as info:
            verifier.recover(reading, bad)
        assert info.value.reason, name
        assert verifier.verify(reading, bad) is False, name
        assert isinstance(verifier.recover_many([(reading, bad)])[0], InvalidSignatureError)


def test_high_s_twin_is_a_real_signature_but_refused(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    """The twin recovers the same key (libsecp256k1 agrees once normalised): refusing it is a
    policy against malleability, not an accident of parsing."""
    from coincurve import PublicKey

    key, reading = sample
    twin = high_s_twin(key.sign(reading, CHAIN_ID, REGISTRY))
    digest = verifier.digest(reading)
    public = PublicKey.from_signature_and_message(twin[:64] + bytes((twin[64] - 27,)), digest, None)
    assert keccak(public.format(compressed=False)[1:])[12:].hex() == key.address[2:].lower()
    assert not verifier.verify(reading, twin)


def test_bytearray_and_memoryview_signatures_are_accepted(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    signature = key.sign(reading, CHAIN_ID, REGISTRY)
    assert verifier.recover(reading, bytearray(signature)) == key.address  # type: ignore[arg-type]
    assert verifier.recover(reading, memoryview(signature)) == key.address  # type: ignore[arg-type]


def test_unrecoverable_r_is_refused(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    """An r that is no point's x coordinate passes the range checks but recovers nothing."""
    p = 2**256 - 2**32 - 977  # the secp256k1 field prime
    off_curve = next(x for x in range(1, 100) if pow(x**3 + 7, (p - 1) // 2, p) != 1)
    key, reading = sample
    signature = off_curve.to_bytes(32) + key.sign(reading, CHAIN_ID, REGISTRY)[32:]
    with pytest.raises(InvalidSignatureError, match="no public key"):
        verifier.recover(reading, signature)
    assert not verifier.verify(reading, signature)


# --------------------------------------------------------------------------------------------
# Well-formed signatures over other data recover another address: verify() is False.


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 8},
        {"timestamp": 1_763_700_000_001},
        {"schema": bytes(32)},
        {"values": (4150, 621)},
        {"values": (4150,)},
        {"values": (4150, 620, 0)},
        {"values": (620, 4150)},
        {"values": ()},
    ],
)
def test_tampered_fields_fail_verification(
    change: dict[str, Any], sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    signature = key.sign(reading, CHAIN_ID, REGISTRY)
    tampered = dataclasses.replace(reading, **change)
    assert verifier.recover(tampered, signature) != key.address
    assert not verifier.verify(tampered, signature)


def test_reading_claiming_another_device_fails(
    device_keys: list[DeviceKey], sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    other = device_keys[2]
    claimed = dataclasses.replace(reading, device=other.address)
    # The real key signs a reading that names another device: it recovers to the real key.
    signature = sign_reading(key.private_key, claimed, CHAIN_ID, REGISTRY)
    assert verifier.recover(claimed, signature) == key.address
    assert not verifier.verify(claimed, signature)
    # DeviceKey refuses to produce such a signature in the first place.
    with pytest.raises(InvalidReadingError, match="device"):
        key.sign(claimed, CHAIN_ID, REGISTRY)


@pytest.mark.parametrize(
    ("chain_id", "contract"), [(CHAIN_ID + 1, REGISTRY), (1, REGISTRY), (CHAIN_ID, OTHER_REGISTRY)]
)
def test_other_domain_fails_verification(
    chain_id: int, contract: str, sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    signature = key.sign(reading, chain_id, contract)
    assert not verifier.verify(reading, signature)
    assert ReadingVerifier(chain_id, contract).verify(reading, signature)


def test_flipped_v_recovers_another_address(
    sample: tuple[DeviceKey, Reading], verifier: ReadingVerifier
) -> None:
    key, reading = sample
    signature = key.sign(reading, CHAIN_ID, REGISTRY)
    flipped = with_v(signature, 55 - signature[64])
    assert verifier.recover(reading, flipped) != key.address  # the point (r, -y): another key
    assert not verifier.verify(reading, flipped)


# --------------------------------------------------------------------------------------------
# Signing inputs


@pytest.mark.parametrize(
    "secret", [b"", bytes(31), bytes(32), SECP256K1_N.to_bytes(32), b"\xff" * 32, "00" * 32]
)
def test_sign_reading_rejects_invalid_keys(secret: Any, sample: tuple[DeviceKey, Reading]) -> None:
    _, reading = sample
    with pytest.raises(InvalidKeyError):
        sign_reading(secret, reading, CHAIN_ID, REGISTRY)
    with pytest.raises(InvalidKeyError):
        DeviceKey(secret)


# --------------------------------------------------------------------------------------------
# The native keccak path


def test_keccak_native_path_matches_reference() -> None:
    for size in [*range(0, 300), 1000, 4096, 100_000]:
        data = os.urandom(size)
        assert keccak256(data) == keccak256_reference(data) == keccak(data)


def test_keccak_is_thread_safe() -> None:
    errors: list[bytes] = []

    def work(seed: int) -> None:
        for i in range(3000):
            data = bytes([seed]) * (i % 257)
            if keccak256(data) != keccak(data):
                errors.append(data)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
