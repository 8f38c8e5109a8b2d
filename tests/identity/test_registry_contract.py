"""The deployed DeviceRegistry agrees with this package: same domain separator, struct hash and
digest, and it accepts exactly the signatures ReadingVerifier accepts (OpenZeppelin ECDSA)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from chainsense.chain.devchain import find_anvil
from chainsense.contracts import load_artifact
from chainsense.identity import (
    DeviceKey,
    InvalidSignatureError,
    Reading,
    ReadingVerifier,
    domain_separator,
    struct_hash,
)
from chainsense.identity.eip712 import SECP256K1_N
from tests.support import free_port

from ._support import ReadingFactory, high_s_twin, with_v

pytestmark = pytest.mark.chain

CHAIN_ID = 31337
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass
class Deployed:
    w3: Web3
    registry: Contract
    verifier: ReadingVerifier


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    port = free_port()
    proc = subprocess.Popen(
        [str(find_anvil()), "--port", str(port), "--chain-id", str(CHAIN_ID), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 10}))
        deadline = time.monotonic() + 30
        while not w3.is_connected():
            assert proc.poll() is None, "anvil exited while starting"
            assert time.monotonic() < deadline, "anvil did not start within 30 s"
            time.sleep(0.05)
        operator = w3.eth.accounts[0]
        artifact = load_artifact("DeviceRegistry")
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(operator, operator).transact({"from": operator})
        receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.01)
        address = receipt["contractAddress"]
        assert address is not None
        registry = w3.eth.contract(address=address, abi=artifact.abi)
        assert isinstance(registry, Contract)
        yield Deployed(w3, registry, ReadingVerifier(CHAIN_ID, address))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _struct(reading: Reading) -> tuple[Any, ...]:
    return (reading.device, reading.seq, reading.timestamp, reading.schema, list(reading.values))


def _on_chain_signer(chain: Deployed, reading: Reading, signature: bytes) -> str:
    signer: str = chain.registry.functions.recoverReadingSigner(_struct(reading), signature).call()
    return signer


def test_domain_separator_matches(deployed: Deployed) -> None:
    on_chain = deployed.registry.functions.DOMAIN_SEPARATOR().call()
    assert on_chain == domain_separator(CHAIN_ID, deployed.registry.address)
    assert on_chain == deployed.verifier.domain_separator


def test_hashes_and_signers_match(deployed: Deployed, make_readings: ReadingFactory) -> None:
    functions = deployed.registry.functions
    for key, reading in make_readings(7, count=60):
        signature = key.sign(reading, CHAIN_ID, deployed.registry.address)
        assert functions.hashReading(_struct(reading)).call() == struct_hash(reading)
        assert functions.readingDigest(_struct(reading)).call() == deployed.verifier.digest(reading)
        assert _on_chain_signer(deployed, reading, signature) == key.address
        assert deployed.verifier.recover(reading, signature) == key.address


def test_refused_signatures_are_refused_on_chain_too(
    deployed: Deployed, sample: tuple[DeviceKey, Reading]
) -> None:
    key, reading = sample
    good = key.sign(reading, CHAIN_ID, deployed.registry.address)
    p = 2**256 - 2**32 - 977
    off_curve = next(x for x in range(1, 100) if pow(x**3 + 7, (p - 1) // 2, p) != 1)
    refused = {
        "high s": high_s_twin(good),
        "v = 0": with_v(good, good[64] - 27),
        "v = 1": with_v(good, 1),
        "v = 29": with_v(good, 29),
        "64 bytes": good[:64],
        "66 bytes": good + b"\x00",
        "r = 0": bytes(32) + good[32:],
        "r = n": SECP256K1_N.to_bytes(32) + good[32:],
        "s = 0": good[:32] + bytes(32) + good[64:],
        "r off the curve": off_curve.to_bytes(32) + good[32:],
    }
    for name, signature in refused.items():
        assert _on_chain_signer(deployed, reading, signature) == ZERO_ADDRESS, name
        with pytest.raises(InvalidSignatureError):
            deployed.verifier.recover(reading, signature)
    # A flipped v is well formed: both sides recover the same other address.
    flipped = with_v(good, 55 - good[64])
    other = deployed.verifier.recover(reading, flipped)
    assert other != key.address
    assert _on_chain_signer(deployed, reading, flipped) == other


def test_verify_reading_agrees_for_a_registered_device(
    deployed: Deployed, sample: tuple[DeviceKey, Reading]
) -> None:
    key, reading = sample
    operator = deployed.w3.eth.accounts[0]
    tx = deployed.registry.functions.register(key.address, operator, bytes(32)).transact(
        {"from": operator}
    )
    deployed.w3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.01)
    signature = key.sign(reading, CHAIN_ID, deployed.registry.address)
    tampered = Reading(reading.device, reading.seq + 1, reading.timestamp, reading.schema)
    verify = deployed.registry.functions.verifyReading
    assert verify(_struct(reading), signature).call() is True
    assert deployed.verifier.verify(reading, signature) is True
    assert verify(_struct(tampered), signature).call() is False
    assert deployed.verifier.verify(tampered, signature) is False
