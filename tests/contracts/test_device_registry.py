"""DeviceRegistry: every function and revert path, events, and EIP-712 reading verification.

Signatures come from eth-account and (tests marked ``node``) from ethers v6, and must be accepted
byte for byte; forged, tampered, malleable, malformed and cross-domain signatures must not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from chainsense.contracts import load_artifact
from tests.contracts.helpers import (
    SECP256K1_N,
    ZERO_ADDRESS,
    ZERO_BYTES32,
    Reading,
    Roles,
    assert_reverts,
    deploy,
    emitted,
    make_account,
    reading_digest,
    reading_struct_hash,
    rpc,
    send,
    sign_reading,
    sign_with_ethers,
    typed_data,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

DEFAULT_ADMIN_ROLE = ZERO_BYTES32
OPERATOR_ROLE = keccak(text="OPERATOR_ROLE")
SCHEMA = keccak(text="chainsense.coldchain.v1")
METADATA = keccak(text="calibration-certificate-2025-001")
UINT64_MAX = 2**64 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

DEVICE = make_account("device-a")
DEVICE_B = make_account("device-b")
NEW_KEY = make_account("device-a-key-2")
THIRD_KEY = make_account("device-a-key-3")
UNREGISTERED = make_account("never-registered")

# (id, values, seq, timestamp): negative int64 values and an empty array included on purpose.
READING_CASES: list[tuple[str, tuple[int, ...], int, int]] = [
    ("two-values", (4150, 620), 1, 1_763_700_000_000),
    ("negative-values", (-40, -1, 0, 1, 2500), 7, 1_763_700_000_001),
    ("int64-extremes", (INT64_MIN, INT64_MAX, INT64_MIN + 1), 2**53 + 1, 2**53 + 3),
    ("empty-values", (), 1, 1_763_700_000_000),
    ("uint64-max-fields", (-(2**31), 2**31), UINT64_MAX, UINT64_MAX),
]


def make_reading(
    device: LocalAccount, values: tuple[int, ...] = (4150, 620), seq: int = 1
) -> Reading:
    return Reading(
        device=device.address,
        seq=seq,
        timestamp=1_763_700_000_000 + seq,
        schema=SCHEMA,
        values=values,
    )


def register(
    registry: Contract, roles: Roles, device: LocalAccount, metadata: bytes = METADATA
) -> TxReceipt:
    return send(
        registry.functions.register(device.address, roles.owner.address, metadata),
        sender=roles.operator.address,
    )


def block_time(w3: Web3, receipt: TxReceipt) -> int:
    return int(w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def next_block_at(w3: Web3, timestamp: int) -> None:
    rpc(w3, "evm_setNextBlockTimestamp", timestamp)


def latest_time(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def device_record(registry: Contract, device: str) -> tuple[Any, ...]:
    return tuple(registry.functions.deviceOf(device).call())


def key_record(registry: Contract, key: str) -> tuple[Any, ...]:
    return tuple(registry.functions.keyOf(key).call())


def is_active(registry: Contract, key: str) -> bool:
    return bool(registry.functions.isActiveKey(key).call())


def was_active(registry: Contract, key: str, at: int) -> bool:
    return bool(registry.functions.wasActiveKeyAt(key, at).call())


def recover(registry: Contract, reading: Reading, signature: bytes) -> ChecksumAddress:
    signer: ChecksumAddress = registry.functions.recoverReadingSigner(
        reading.as_abi(), signature
    ).call()
    return signer


def verify(registry: Contract, reading: Reading, signature: bytes) -> bool:
    return bool(registry.functions.verifyReading(reading.as_abi(), signature).call())


def verify_at(registry: Contract, reading: Reading, signature: bytes, at: int) -> bool:
    return bool(registry.functions.verifyReadingAt(reading.as_abi(), signature, at).call())


def signed(key: LocalAccount, reading: Reading, registry: Contract, chain_id: int) -> bytes:
    return sign_reading(key, reading, chain_id=chain_id, verifying_contract=registry.address)


def pause(registry: Contract, roles: Roles) -> None:
    send(registry.functions.pause(), sender=roles.admin.address)


# --- constructor ------------------------------------------------------------------------------


def test_constructor_grantsRolesAndSetsDomain(
    registry: Contract, roles: Roles, chain_id: int
) -> None:
    has_role = registry.functions.hasRole
    assert has_role(DEFAULT_ADMIN_ROLE, roles.admin.address).call()
    assert has_role(OPERATOR_ROLE, roles.operator.address).call()
    assert not has_role(OPERATOR_ROLE, roles.admin.address).call()
    assert not has_role(DEFAULT_ADMIN_ROLE, roles.operator.address).call()
    assert registry.functions.OPERATOR_ROLE().call() == OPERATOR_ROLE
    assert not registry.functions.paused().call()
    _, name, version, domain_chain_id, contract, salt, extensions = (
        registry.functions.eip712Domain().call()
    )
    assert (name, version, domain_chain_id, contract) == (
        "ChainSense",
        "1",
        chain_id,
        registry.address,
    )
    assert (salt, extensions) == (ZERO_BYTES32, [])


@pytest.mark.parametrize("zero", ["admin", "operator"])
def test_constructor_revertsOnZeroAddress(w3: Web3, roles: Roles, zero: str) -> None:
    artifact = load_artifact("DeviceRegistry")
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    admin = ZERO_ADDRESS if zero == "admin" else roles.admin.address
    operator = ZERO_ADDRESS if zero == "operator" else roles.operator.address
    assert_reverts(
        factory.constructor(admin, operator),
        "DeviceRegistryZeroAddress",
        sender=roles.admin.address,
    )


# --- register ---------------------------------------------------------------------------------


def test_register_storesDeviceAndKey(w3: Web3, registry: Contract, roles: Roles) -> None:
    receipt = register(registry, roles, DEVICE)
    now = block_time(w3, receipt)
    assert emitted(registry, receipt) == [
        (
            "DeviceRegistered",
            {"device": DEVICE.address, "owner": roles.owner.address, "metadataHash": METADATA},
        )
    ]
    assert device_record(registry, DEVICE.address) == (
        roles.owner.address,
        METADATA,
        DEVICE.address,
        now,
        0,
    )
    assert key_record(registry, DEVICE.address) == (DEVICE.address, now, 0)
    assert is_active(registry, DEVICE.address)


@pytest.mark.parametrize("zero", ["device", "owner"])
def test_register_revertsOnZeroAddress(registry: Contract, roles: Roles, zero: str) -> None:
    device = ZERO_ADDRESS if zero == "device" else DEVICE.address
    owner = ZERO_ADDRESS if zero == "owner" else roles.owner.address
    assert_reverts(
        registry.functions.register(device, owner, METADATA),
        "DeviceRegistryZeroAddress",
        sender=roles.operator.address,
    )


def test_register_revertsWhenKeyAlreadyUsed(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    register(registry, roles, DEVICE_B)
    send(registry.functions.revoke(DEVICE_B.address), sender=roles.operator.address)
    # a rotated-out key, the current key of another identity, and a revoked device's key
    for key in (DEVICE, NEW_KEY, DEVICE_B):
        assert_reverts(
            registry.functions.register(key.address, roles.owner.address, METADATA),
            "DeviceRegistryKeyAlreadyUsed",
            key.address,
            sender=roles.operator.address,
        )


@pytest.mark.parametrize("caller", ["admin", "stranger"])
def test_register_revertsForUnauthorizedCaller(
    registry: Contract, roles: Roles, caller: str
) -> None:
    account: LocalAccount = getattr(roles, caller)
    assert_reverts(
        registry.functions.register(DEVICE.address, roles.owner.address, METADATA),
        "AccessControlUnauthorizedAccount",
        account.address,
        OPERATOR_ROLE,
        sender=account.address,
    )


def test_register_revertsWhenPaused(registry: Contract, roles: Roles) -> None:
    pause(registry, roles)
    assert_reverts(
        registry.functions.register(DEVICE.address, roles.owner.address, METADATA),
        "EnforcedPause",
        sender=roles.operator.address,
    )


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_endsCurrentKey(w3: Web3, registry: Contract, roles: Roles) -> None:
    registered_at = block_time(w3, register(registry, roles, DEVICE))
    receipt = send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    revoked_at = block_time(w3, receipt)
    assert emitted(registry, receipt) == [
        ("DeviceRevoked", {"device": DEVICE.address, "key": DEVICE.address})
    ]
    assert device_record(registry, DEVICE.address) == (
        roles.owner.address,
        METADATA,
        DEVICE.address,
        registered_at,
        revoked_at,
    )
    assert key_record(registry, DEVICE.address) == (DEVICE.address, registered_at, revoked_at)
    assert not is_active(registry, DEVICE.address)


def test_revoke_afterRotation_endsTheNewKey(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    receipt = send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    assert emitted(registry, receipt) == [
        ("DeviceRevoked", {"device": DEVICE.address, "key": NEW_KEY.address})
    ]
    assert not is_active(registry, NEW_KEY.address)
    assert not is_active(registry, DEVICE.address)


def test_revoke_revertsForUnknownDevice(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    # a never-seen address, and a rotated-in key (a key, not a device identity)
    for unknown in (UNREGISTERED.address, NEW_KEY.address):
        assert_reverts(
            registry.functions.revoke(unknown),
            "DeviceRegistryUnknownDevice",
            unknown,
            sender=roles.operator.address,
        )


def test_revoke_revertsWhenAlreadyRevoked(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    assert_reverts(
        registry.functions.revoke(DEVICE.address),
        "DeviceRegistryDeviceRevoked",
        DEVICE.address,
        sender=roles.operator.address,
    )


@pytest.mark.parametrize("caller", ["admin", "stranger"])
def test_revoke_revertsForUnauthorizedCaller(registry: Contract, roles: Roles, caller: str) -> None:
    account: LocalAccount = getattr(roles, caller)
    register(registry, roles, DEVICE)
    assert_reverts(
        registry.functions.revoke(DEVICE.address),
        "AccessControlUnauthorizedAccount",
        account.address,
        OPERATOR_ROLE,
        sender=account.address,
    )


def test_revoke_allowedWhilePaused(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    pause(registry, roles)
    receipt = send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    assert emitted(registry, receipt) == [
        ("DeviceRevoked", {"device": DEVICE.address, "key": DEVICE.address})
    ]
    assert not is_active(registry, DEVICE.address)


# --- rotateKey --------------------------------------------------------------------------------


def test_rotateKey_movesValidityToTheNewKey(
    w3: Web3, registry: Contract, roles: Roles, chain_id: int
) -> None:
    t0 = latest_time(w3) + 100
    t1 = t0 + 100
    next_block_at(w3, t0)
    register(registry, roles, DEVICE)
    old_reading = make_reading(DEVICE, seq=1)
    old_signature = signed(DEVICE, old_reading, registry, chain_id)
    assert verify(registry, old_reading, old_signature)

    next_block_at(w3, t1)
    receipt = send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    assert block_time(w3, receipt) == t1
    assert emitted(registry, receipt) == [
        (
            "DeviceKeyRotated",
            {"device": DEVICE.address, "oldKey": DEVICE.address, "newKey": NEW_KEY.address},
        )
    ]
    assert device_record(registry, DEVICE.address) == (
        roles.owner.address,
        METADATA,
        NEW_KEY.address,
        t0,
        0,
    )
    assert key_record(registry, DEVICE.address) == (DEVICE.address, t0, t1)
    assert key_record(registry, NEW_KEY.address) == (DEVICE.address, t1, 0)
    assert not is_active(registry, DEVICE.address)
    assert is_active(registry, NEW_KEY.address)

    # The old key's readings: no longer acceptable now, still verifiable before the rotation.
    assert recover(registry, old_reading, old_signature) == DEVICE.address
    assert not verify(registry, old_reading, old_signature)
    assert verify_at(registry, old_reading, old_signature, t0)
    assert verify_at(registry, old_reading, old_signature, t1 - 1)
    assert not verify_at(registry, old_reading, old_signature, t1)

    # The new key's readings: valid from the rotation on.
    new_reading = make_reading(NEW_KEY, seq=2)
    new_signature = signed(NEW_KEY, new_reading, registry, chain_id)
    assert verify(registry, new_reading, new_signature)
    assert not verify_at(registry, new_reading, new_signature, t1 - 1)
    assert verify_at(registry, new_reading, new_signature, t1)
    # A reading claiming the identity but signed by the new key is not the identity's signature.
    assert not verify(registry, new_reading.replace(device=DEVICE.address), new_signature)


@pytest.mark.parametrize("used", ["current-key", "other-device", "rotated-out-key"])
def test_rotateKey_revertsWhenNewKeyAlreadyUsed(
    registry: Contract, roles: Roles, used: str
) -> None:
    register(registry, roles, DEVICE)
    register(registry, roles, DEVICE_B)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    key = {
        "current-key": NEW_KEY.address,
        "other-device": DEVICE_B.address,
        "rotated-out-key": DEVICE.address,
    }[used]
    assert_reverts(
        registry.functions.rotateKey(DEVICE.address, key),
        "DeviceRegistryKeyAlreadyUsed",
        key,
        sender=roles.operator.address,
    )


def test_rotateKey_revertsOnZeroKey(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    assert_reverts(
        registry.functions.rotateKey(DEVICE.address, ZERO_ADDRESS),
        "DeviceRegistryZeroAddress",
        sender=roles.operator.address,
    )


def test_rotateKey_revertsForUnknownDevice(registry: Contract, roles: Roles) -> None:
    assert_reverts(
        registry.functions.rotateKey(UNREGISTERED.address, NEW_KEY.address),
        "DeviceRegistryUnknownDevice",
        UNREGISTERED.address,
        sender=roles.operator.address,
    )


def test_rotateKey_revertsForRevokedDevice(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    assert_reverts(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        "DeviceRegistryDeviceRevoked",
        DEVICE.address,
        sender=roles.operator.address,
    )


@pytest.mark.parametrize("caller", ["admin", "stranger"])
def test_rotateKey_revertsForUnauthorizedCaller(
    registry: Contract, roles: Roles, caller: str
) -> None:
    account: LocalAccount = getattr(roles, caller)
    register(registry, roles, DEVICE)
    assert_reverts(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        "AccessControlUnauthorizedAccount",
        account.address,
        OPERATOR_ROLE,
        sender=account.address,
    )


def test_rotateKey_revertsWhenPaused(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    pause(registry, roles)
    assert_reverts(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        "EnforcedPause",
        sender=roles.operator.address,
    )


def test_rotateKey_twice_keepsEachWindow(w3: Web3, registry: Contract, roles: Roles) -> None:
    t0 = latest_time(w3) + 10
    next_block_at(w3, t0)
    register(registry, roles, DEVICE)
    next_block_at(w3, t0 + 10)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    next_block_at(w3, t0 + 20)
    send(
        registry.functions.rotateKey(DEVICE.address, THIRD_KEY.address),
        sender=roles.operator.address,
    )
    assert key_record(registry, DEVICE.address) == (DEVICE.address, t0, t0 + 10)
    assert key_record(registry, NEW_KEY.address) == (DEVICE.address, t0 + 10, t0 + 20)
    assert key_record(registry, THIRD_KEY.address) == (DEVICE.address, t0 + 20, 0)
    assert [is_active(registry, k.address) for k in (DEVICE, NEW_KEY, THIRD_KEY)] == [
        False,
        False,
        True,
    ]
    assert device_record(registry, DEVICE.address)[2] == THIRD_KEY.address


# --- updateMetadata ---------------------------------------------------------------------------


def test_updateMetadata_replacesTheHash(w3: Web3, registry: Contract, roles: Roles) -> None:
    registered_at = block_time(w3, register(registry, roles, DEVICE))
    new_hash = keccak(text="calibration-certificate-2026-002")
    receipt = send(
        registry.functions.updateMetadata(DEVICE.address, new_hash),
        sender=roles.operator.address,
    )
    assert emitted(registry, receipt) == [
        ("DeviceMetadataUpdated", {"device": DEVICE.address, "metadataHash": new_hash})
    ]
    assert device_record(registry, DEVICE.address) == (
        roles.owner.address,
        new_hash,
        DEVICE.address,
        registered_at,
        0,
    )
    assert key_record(registry, DEVICE.address) == (DEVICE.address, registered_at, 0)


def test_updateMetadata_revertsForUnknownDevice(registry: Contract, roles: Roles) -> None:
    assert_reverts(
        registry.functions.updateMetadata(UNREGISTERED.address, METADATA),
        "DeviceRegistryUnknownDevice",
        UNREGISTERED.address,
        sender=roles.operator.address,
    )


def test_updateMetadata_revertsForRevokedDevice(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    assert_reverts(
        registry.functions.updateMetadata(DEVICE.address, METADATA),
        "DeviceRegistryDeviceRevoked",
        DEVICE.address,
        sender=roles.operator.address,
    )


@pytest.mark.parametrize("caller", ["admin", "stranger"])
def test_updateMetadata_revertsForUnauthorizedCaller(
    registry: Contract, roles: Roles, caller: str
) -> None:
    account: LocalAccount = getattr(roles, caller)
    register(registry, roles, DEVICE)
    assert_reverts(
        registry.functions.updateMetadata(DEVICE.address, METADATA),
        "AccessControlUnauthorizedAccount",
        account.address,
        OPERATOR_ROLE,
        sender=account.address,
    )


def test_updateMetadata_revertsWhenPaused(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    pause(registry, roles)
    assert_reverts(
        registry.functions.updateMetadata(DEVICE.address, METADATA),
        "EnforcedPause",
        sender=roles.operator.address,
    )


# --- views ------------------------------------------------------------------------------------


def test_deviceOf_keyOf_isActiveKey_unknownAreZero(registry: Contract) -> None:
    assert device_record(registry, UNREGISTERED.address) == (
        ZERO_ADDRESS,
        ZERO_BYTES32,
        ZERO_ADDRESS,
        0,
        0,
    )
    assert key_record(registry, UNREGISTERED.address) == (ZERO_ADDRESS, 0, 0)
    assert not is_active(registry, UNREGISTERED.address)
    assert not is_active(registry, ZERO_ADDRESS)


def test_deviceOf_keyOf_afterRotation(registry: Contract, roles: Roles) -> None:
    register(registry, roles, DEVICE)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    # The identity stays the first key; a rotated-in key is a key, not a device.
    assert device_record(registry, DEVICE.address)[2] == NEW_KEY.address
    assert device_record(registry, NEW_KEY.address)[0] == ZERO_ADDRESS
    assert key_record(registry, NEW_KEY.address)[0] == DEVICE.address


def test_wasActiveKeyAt_boundaries(w3: Web3, registry: Contract, roles: Roles) -> None:
    t0 = latest_time(w3) + 1_000
    t1 = t0 + 3_600
    t2 = t1 + 60
    next_block_at(w3, t0)
    register(registry, roles, DEVICE)
    next_block_at(w3, t1)
    send(
        registry.functions.rotateKey(DEVICE.address, NEW_KEY.address),
        sender=roles.operator.address,
    )
    cases = {
        # old key: [t0, t1)
        (DEVICE.address, 0): False,
        (DEVICE.address, t0 - 1): False,
        (DEVICE.address, t0): True,
        (DEVICE.address, t1 - 1): True,
        (DEVICE.address, t1): False,
        (DEVICE.address, UINT64_MAX): False,
        # new key: [t1, ∞) until revoked at t2, then [t1, t2)
        (NEW_KEY.address, t1 - 1): False,
        (NEW_KEY.address, t1): True,
        (NEW_KEY.address, UINT64_MAX): True,
        # unknown keys never
        (UNREGISTERED.address, 0): False,
        (UNREGISTERED.address, t0): False,
        (ZERO_ADDRESS, t0): False,
    }
    assert {case: was_active(registry, *case) for case in cases} == cases

    next_block_at(w3, t2)
    send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)
    assert was_active(registry, NEW_KEY.address, t2 - 1)
    assert not was_active(registry, NEW_KEY.address, t2)
    assert not was_active(registry, NEW_KEY.address, UINT64_MAX)
    assert was_active(registry, DEVICE.address, t1 - 1)  # revocation does not rewrite history


# --- pause / unpause --------------------------------------------------------------------------


def test_pause_unpause_byAdmin(registry: Contract, roles: Roles) -> None:
    receipt = send(registry.functions.pause(), sender=roles.admin.address)
    assert emitted(registry, receipt) == [("Paused", {"account": roles.admin.address})]
    assert registry.functions.paused().call()
    receipt = send(registry.functions.unpause(), sender=roles.admin.address)
    assert emitted(registry, receipt) == [("Unpaused", {"account": roles.admin.address})]
    assert not registry.functions.paused().call()
    register(registry, roles, DEVICE)  # works again


@pytest.mark.parametrize("caller", ["operator", "stranger"])
def test_pause_unpause_revertForNonAdmin(registry: Contract, roles: Roles, caller: str) -> None:
    account: LocalAccount = getattr(roles, caller)
    assert_reverts(
        registry.functions.pause(),
        "AccessControlUnauthorizedAccount",
        account.address,
        DEFAULT_ADMIN_ROLE,
        sender=account.address,
    )
    pause(registry, roles)
    assert_reverts(
        registry.functions.unpause(),
        "AccessControlUnauthorizedAccount",
        account.address,
        DEFAULT_ADMIN_ROLE,
        sender=account.address,
    )


def test_pause_revertsWhenPaused_unpause_revertsWhenNotPaused(
    registry: Contract, roles: Roles
) -> None:
    assert_reverts(registry.functions.unpause(), "ExpectedPause", sender=roles.admin.address)
    pause(registry, roles)
    assert_reverts(registry.functions.pause(), "EnforcedPause", sender=roles.admin.address)


# --- EIP-712 hashing --------------------------------------------------------------------------


def _case_reading(case: tuple[str, tuple[int, ...], int, int]) -> Reading:
    _, values, seq, timestamp = case
    return Reading(
        device=DEVICE.address, seq=seq, timestamp=timestamp, schema=SCHEMA, values=values
    )


case_ids = [case[0] for case in READING_CASES]


def test_readingTypehash_and_domainSeparator_matchEthAccount(
    registry: Contract, chain_id: int
) -> None:
    assert registry.functions.READING_TYPEHASH().call() == keccak(
        text="Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)"
    )
    message = encode_typed_data(
        full_message=typed_data(
            make_reading(DEVICE), chain_id=chain_id, verifying_contract=registry.address
        )
    )
    assert registry.functions.DOMAIN_SEPARATOR().call() == message.header


@pytest.mark.parametrize("case", READING_CASES, ids=case_ids)
def test_hashReading_readingDigest_matchEthAccount(
    registry: Contract, chain_id: int, case: tuple[str, tuple[int, ...], int, int]
) -> None:
    reading = _case_reading(case)
    expected_struct = reading_struct_hash(
        reading, chain_id=chain_id, verifying_contract=registry.address
    )
    expected_digest = reading_digest(
        reading, chain_id=chain_id, verifying_contract=registry.address
    )
    assert registry.functions.hashReading(reading.as_abi()).call() == expected_struct
    assert registry.functions.readingDigest(reading.as_abi()).call() == expected_digest


# --- EIP-712 signatures: accepted -------------------------------------------------------------


@pytest.mark.parametrize("case", READING_CASES, ids=case_ids)
def test_verifyReading_acceptsEthAccountSignature(
    registry: Contract, roles: Roles, chain_id: int, case: tuple[str, tuple[int, ...], int, int]
) -> None:
    register(registry, roles, DEVICE)
    reading = _case_reading(case)
    signature = signed(DEVICE, reading, registry, chain_id)
    assert len(signature) == 65
    assert recover(registry, reading, signature) == DEVICE.address
    assert verify(registry, reading, signature)


EthersSigner = Callable[[str, int], dict[str, bytes]]


@pytest.fixture(scope="module")
def ethers_signatures() -> EthersSigner:
    """``(verifying contract, chain id) -> {case id: signature}``, signed by ethers v6.

    All cases are signed by one node process per domain (the registry lands at the same address
    in every test), which keeps the node start-up cost out of each test."""
    cache: dict[tuple[str, int], dict[str, bytes]] = {}

    def signatures(contract: str, chain_id: int) -> dict[str, bytes]:
        if (contract, chain_id) not in cache:
            jobs = [(DEVICE, _case_reading(case), chain_id, contract) for case in READING_CASES]
            cache[contract, chain_id] = dict(zip(case_ids, sign_with_ethers(jobs), strict=True))
        return cache[contract, chain_id]

    return signatures


@pytest.mark.node
@pytest.mark.parametrize("case", READING_CASES, ids=case_ids)
def test_verifyReading_acceptsEthersSignature_byteIdentical(
    registry: Contract,
    roles: Roles,
    chain_id: int,
    ethers_signatures: EthersSigner,
    case: tuple[str, tuple[int, ...], int, int],
) -> None:
    register(registry, roles, DEVICE)
    reading = _case_reading(case)
    ethers_signature = ethers_signatures(registry.address, chain_id)[case[0]]
    assert ethers_signature == signed(DEVICE, reading, registry, chain_id)
    assert recover(registry, reading, ethers_signature) == DEVICE.address
    assert verify(registry, reading, ethers_signature)


# --- EIP-712 signatures: rejected -------------------------------------------------------------


def test_verifyReading_rejectsForgedSignature(
    registry: Contract, roles: Roles, chain_id: int
) -> None:
    register(registry, roles, DEVICE)
    register(registry, roles, DEVICE_B)  # the forger is itself a registered, active device
    reading = make_reading(DEVICE)
    forged = signed(DEVICE_B, reading, registry, chain_id)
    assert recover(registry, reading, forged) == DEVICE_B.address
    assert not verify(registry, reading, forged)
    assert not verify_at(registry, reading, forged, UINT64_MAX)


TAMPERINGS: dict[str, dict[str, Any]] = {
    "device": {"device": DEVICE_B.address},
    "seq": {"seq": 2},
    "timestamp": {"timestamp": 1_763_700_000_002},
    "schema": {"schema": keccak(text="chainsense.energy.v1")},
    "values-element": {"values": (4151, 620)},
    "values-sign": {"values": (-4150, 620)},
    "values-appended": {"values": (4150, 620, 0)},
    "values-dropped": {"values": (4150,)},
    "values-emptied": {"values": ()},
    "values-reordered": {"values": (620, 4150)},
}


@pytest.mark.parametrize("field", list(TAMPERINGS))
def test_verifyReading_rejectsTamperedField(
    registry: Contract, roles: Roles, chain_id: int, field: str
) -> None:
    register(registry, roles, DEVICE)
    register(registry, roles, DEVICE_B)
    reading = make_reading(DEVICE)
    signature = signed(DEVICE, reading, registry, chain_id)
    tampered = reading.replace(**TAMPERINGS[field])
    assert tampered != reading
    assert recover(registry, tampered, signature) != tampered.device
    assert not verify(registry, tampered, signature)
    assert not verify_at(registry, tampered, signature, UINT64_MAX)
    assert verify(registry, reading, signature)


def _ecrecover_precompile(w3: Web3, digest: bytes, v: int, r: int, s: int) -> str:
    data = digest + v.to_bytes(32, "big") + r.to_bytes(32, "big") + s.to_bytes(32, "big")
    out = bytes(w3.eth.call({"to": "0x0000000000000000000000000000000000000001", "data": data}))
    return "0x" + out[12:].hex() if out else ""


def test_recoverReadingSigner_rejectsMalleableHighS(
    w3: Web3, registry: Contract, roles: Roles, chain_id: int
) -> None:
    register(registry, roles, DEVICE)
    reading = make_reading(DEVICE)
    signature = signed(DEVICE, reading, registry, chain_id)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    assert s <= SECP256K1_N // 2
    high_s = SECP256K1_N - s
    flipped_v = 55 - v  # 27 <-> 28
    malleable = r.to_bytes(32, "big") + high_s.to_bytes(32, "big") + bytes([flipped_v])
    # The attack is real: the raw ecrecover precompile accepts the twin signature ...
    digest = reading_digest(reading, chain_id=chain_id, verifying_contract=registry.address)
    assert _ecrecover_precompile(w3, digest, flipped_v, r, high_s) == DEVICE.address.lower()
    # ... and the registry refuses it.
    assert recover(registry, reading, malleable) == ZERO_ADDRESS
    assert not verify(registry, reading, malleable)
    assert not verify_at(registry, reading, malleable, latest_time(w3))


def _compact(signature: bytes) -> bytes:
    """EIP-2098 64-byte form of a 65-byte signature."""
    s = int.from_bytes(signature[32:64], "big") | ((signature[64] - 27) << 255)
    return signature[:32] + s.to_bytes(32, "big")


BAD_SIGNATURES: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda sig: b"",
    "64-bytes-eip2098": _compact,
    "64-bytes-truncated": lambda sig: sig[:64],
    "66-bytes": lambda sig: sig + b"\x00",
    "130-bytes": lambda sig: sig + sig,
    "65-zero-bytes": lambda sig: bytes(65),
    "v-0-instead-of-27": lambda sig: sig[:64] + bytes([sig[64] - 27]),
    "r-zero": lambda sig: bytes(32) + sig[32:],
}


@pytest.mark.parametrize("kind", list(BAD_SIGNATURES))
def test_recoverReadingSigner_rejectsMalformedSignature(
    registry: Contract, roles: Roles, chain_id: int, kind: str
) -> None:
    register(registry, roles, DEVICE)
    reading = make_reading(DEVICE)
    bad = BAD_SIGNATURES[kind](signed(DEVICE, reading, registry, chain_id))
    assert recover(registry, reading, bad) == ZERO_ADDRESS
    assert not verify(registry, reading, bad)
    assert not verify_at(registry, reading, bad, UINT64_MAX)


def test_verifyReading_rejectsSignatureForAnotherChainId(
    registry: Contract, roles: Roles, chain_id: int
) -> None:
    register(registry, roles, DEVICE)
    reading = make_reading(DEVICE)
    other_chain = sign_reading(DEVICE, reading, chain_id=1, verifying_contract=registry.address)
    assert other_chain != signed(DEVICE, reading, registry, chain_id)
    assert recover(registry, reading, other_chain) != DEVICE.address
    assert not verify(registry, reading, other_chain)


def test_verifyReading_rejectsSignatureForAnotherVerifyingContract(
    w3: Web3, registry: Contract, roles: Roles, chain_id: int
) -> None:
    other = deploy(
        w3,
        "DeviceRegistry",
        roles.admin.address,
        roles.operator.address,
        sender=roles.admin.address,
    )
    register(registry, roles, DEVICE)
    register(other, roles, DEVICE)
    reading = make_reading(DEVICE)
    for_other = signed(DEVICE, reading, other, chain_id)
    assert verify(other, reading, for_other)
    assert recover(registry, reading, for_other) != DEVICE.address
    assert not verify(registry, reading, for_other)


def test_verifyReading_revokedDevice_oldReadingsStayVerifiable(
    w3: Web3, registry: Contract, roles: Roles, chain_id: int
) -> None:
    t0 = latest_time(w3) + 100
    t1 = t0 + 500
    next_block_at(w3, t0)
    register(registry, roles, DEVICE)
    reading = make_reading(DEVICE)
    signature = signed(DEVICE, reading, registry, chain_id)
    assert verify(registry, reading, signature)
    next_block_at(w3, t1)
    send(registry.functions.revoke(DEVICE.address), sender=roles.operator.address)

    assert recover(registry, reading, signature) == DEVICE.address
    assert not verify(registry, reading, signature)
    assert verify_at(registry, reading, signature, t0)
    assert verify_at(registry, reading, signature, t1 - 1)
    assert not verify_at(registry, reading, signature, t1)
    assert not verify_at(registry, reading, signature, t0 - 1)
    # a new reading signed after revocation is refused too
    fresh = make_reading(DEVICE, seq=2)
    assert not verify(registry, fresh, signed(DEVICE, fresh, registry, chain_id))


def test_verifyReading_rejectsUnknownDevice(w3: Web3, registry: Contract, chain_id: int) -> None:
    reading = make_reading(UNREGISTERED)
    signature = signed(UNREGISTERED, reading, registry, chain_id)
    assert recover(registry, reading, signature) == UNREGISTERED.address
    assert not verify(registry, reading, signature)
    assert not verify_at(registry, reading, signature, latest_time(w3))
    assert not verify_at(registry, reading, signature, 0)
