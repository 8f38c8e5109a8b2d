"""EIP-712 typing of readings: hashes equal eth-account's, validation names the field."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from chainsense.identity import (
    READING_TYPEHASH,
    DeviceKey,
    InvalidDomainError,
    InvalidReadingError,
    Reading,
    did_pkh,
    domain_separator,
    reading_digest,
    schema_id,
    struct_hash,
    typed_data,
    typed_data_digest,
)
from chainsense.identity.eip712 import INT64_MAX, INT64_MIN, UINT64_MAX

from ._support import CHAIN_ID, OTHER_REGISTRY, REGISTRY, ReadingFactory

ADDRESS = "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"  # private key 0x0101...01


def _reading(**overrides: Any) -> Reading:
    fields: dict[str, Any] = {
        "device": ADDRESS,
        "seq": 1,
        "timestamp": 1_763_700_000_000,
        "schema": bytes(32),
        "values": (4150, 620),
    }
    fields.update(overrides)
    return Reading(**fields)


def test_typehash_is_the_contract_type_string() -> None:
    text = "Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)"
    assert keccak(text=text) == READING_TYPEHASH


def test_schema_id_is_keccak_of_the_abi_encoded_definition() -> None:
    metrics = [("temperature", "Cel", 2), ("humidité", "%RH", -1), ("x" * 40, "", 127)]
    types = ["string", "uint32", "(string,string,int8)[]"]
    for name, version, ms in (
        ("coldchain", 1, metrics),
        ("", 0, []),
        ("n", 2**32 - 1, metrics[:1]),
    ):
        assert schema_id(name, version, ms) == keccak(abi_encode(types, [name, version, ms]))


def test_schema_id_changes_with_every_committed_part() -> None:
    base = schema_id("cold", 1, [("temperature", "Cel", 2)])
    assert schema_id("cold", 1, [("temperature", "Cel", 1)]) != base  # scale
    assert schema_id("cold", 1, [("temperature", "K", 2)]) != base  # unit
    assert schema_id("cold", 2, [("temperature", "Cel", 2)]) != base  # version
    assert schema_id("cold", 1, [("temp", "Cel", 2)]) != base  # metric name
    with pytest.raises(ValueError, match="int8"):
        schema_id("cold", 1, [("temperature", "Cel", 128)])


def test_hashes_equal_eth_account_for_random_readings(make_readings: ReadingFactory) -> None:
    for _, reading in make_readings(1):
        message = encode_typed_data(full_message=typed_data(reading, CHAIN_ID, REGISTRY))
        assert message.header == domain_separator(CHAIN_ID, REGISTRY)
        assert message.body == struct_hash(reading), reading
        expected = keccak(b"\x19" + message.version + message.header + message.body)
        assert reading_digest(reading, CHAIN_ID, REGISTRY) == expected
        assert typed_data_digest(message.header, message.body) == expected


@pytest.mark.parametrize(
    ("chain_id", "contract"),
    [(1, REGISTRY), (2**64, REGISTRY), (CHAIN_ID, "0x" + "00" * 20), (10, "0x" + "ff" * 20)],
)
def test_domain_separator_equals_eth_account(chain_id: int, contract: str) -> None:
    message = encode_typed_data(full_message=typed_data(_reading(), chain_id, contract))
    assert domain_separator(chain_id, contract) == message.header
    assert domain_separator(chain_id, contract.lower()) == message.header


def test_domains_differ_by_chain_and_contract() -> None:
    seps = {
        domain_separator(CHAIN_ID, REGISTRY),
        domain_separator(CHAIN_ID + 1, REGISTRY),
        domain_separator(CHAIN_ID, OTHER_REGISTRY),
    }
    assert len(seps) == 3


def test_typed_data_signed_by_eth_account_matches_sign_reading(
    make_readings: ReadingFactory,
) -> None:
    for key, reading in make_readings(2, count=60):
        full = typed_data(reading, CHAIN_ID, REGISTRY)
        theirs = Account.sign_typed_data(key.private_key, full_message=full).signature
        assert bytes(theirs) == key.sign(reading, CHAIN_ID, REGISTRY)


def test_typed_data_shape() -> None:
    data = typed_data(_reading(schema=keccak(text="x"), values=(-5,)), CHAIN_ID, REGISTRY.lower())
    assert data["primaryType"] == "Reading"
    assert data["domain"] == {
        "name": "ChainSense",
        "version": "1",
        "chainId": CHAIN_ID,
        "verifyingContract": REGISTRY,
    }
    assert data["message"] == {
        "device": ADDRESS,
        "seq": 1,
        "timestamp": 1_763_700_000_000,
        "schema": "0x" + keccak(text="x").hex(),
        "values": [-5],
    }
    assert [f["name"] for f in data["types"]["EIP712Domain"]] == [
        "name",
        "version",
        "chainId",
        "verifyingContract",
    ]


def test_typed_data_digest_checks_lengths() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        typed_data_digest(bytes(31), bytes(32))


# --------------------------------------------------------------------------------------------
# Validation


def test_reading_normalises_device_and_values() -> None:
    reading = _reading(device=ADDRESS.lower(), values=[1, 2], schema=bytearray(32))
    assert reading.device == ADDRESS
    assert reading.values == (1, 2)
    assert type(reading.schema) is bytes
    assert _reading(device="0x" + ADDRESS[2:].upper()).device == ADDRESS
    assert reading == _reading(values=(1, 2))


def test_reading_is_frozen() -> None:
    reading = _reading()
    with pytest.raises(AttributeError):
        reading.seq = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"device": ADDRESS[:2] + ADDRESS[2:].swapcase()}, "device"),
        ({"device": ADDRESS[:-1]}, "device"),
        ({"device": "1a642f0E3c3aF545E7AcBD38b07251B3990914F1"}, "device"),
        ({"device": "0x" + "g" * 40}, "device"),
        ({"device": 12}, "device"),
        ({"seq": -1}, "seq"),
        ({"seq": UINT64_MAX + 1}, "seq"),
        ({"seq": 1.0}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": "1"}, "seq"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": UINT64_MAX + 1}, "timestamp"),
        ({"schema": bytes(31)}, "schema"),
        ({"schema": "0x" + "00" * 32}, "schema"),
        ({"values": (INT64_MAX + 1,)}, "values[0]"),
        ({"values": (0, INT64_MIN - 1)}, "values[1]"),
        ({"values": (0, 0, 1.5)}, "values[2]"),
        ({"values": (False,)}, "values[0]"),
        ({"values": 5}, "values"),
        ({"values": "12"}, "values"),
    ],
)
def test_reading_rejects_with_field_name(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidReadingError) as info:
        _reading(**overrides)
    assert info.value.field == field
    assert field in str(info.value)


def test_reading_accepts_range_limits() -> None:
    reading = _reading(seq=UINT64_MAX, timestamp=0, values=(INT64_MIN, INT64_MAX))
    assert reading.seq == UINT64_MAX


def test_from_json_and_to_json_roundtrip() -> None:
    raw = {
        "device": ADDRESS.lower(),
        "seq": 7,
        "timestamp": "1763700000000",
        "schema": "0x" + keccak(text="coldchain.v1").hex(),
        "values": [4150, "-9223372036854775808"],
        "signature": "0x00",
    }
    reading = Reading.from_json(raw)
    assert reading == _reading(seq=7, schema=keccak(text="coldchain.v1"), values=(4150, INT64_MIN))
    out = reading.to_json()
    assert out["values"] == [4150, "-9223372036854775808"]  # beyond 2^53: a string
    assert out["timestamp"] == 1_763_700_000_000
    assert Reading.from_json(out) == reading


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"seq": 1}, "device"),
        ({"seq": "1e3"}, "seq"),
        ({"seq": " 1"}, "seq"),
        ({"seq": None}, "seq"),
        ({"timestamp": 1.5}, "timestamp"),
        ({"schema": "0x00"}, "schema"),
        ({"schema": "0x" + "zz" * 32}, "schema"),
        ({"values": {"a": 1}}, "values"),
        ({"values": [1, "x"]}, "values[1]"),
        ({"values": [1, str(2**63)]}, "values[1]"),
    ],
)
def test_from_json_rejects_with_field_name(raw: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "device": ADDRESS,
        "seq": 1,
        "timestamp": 1,
        "schema": "0x" + "00" * 32,
        "values": [],
    }
    if field == "device":
        del base["device"]
    base.update(raw)
    with pytest.raises(InvalidReadingError) as info:
        Reading.from_json(base)
    assert info.value.field == field


# --------------------------------------------------------------------------------------------
# Domain and DID


@pytest.mark.parametrize(
    ("chain_id", "contract", "field"),
    [
        (0, REGISTRY, "chainId"),
        (-1, REGISTRY, "chainId"),
        (True, REGISTRY, "chainId"),
        (2**256, REGISTRY, "chainId"),
        (CHAIN_ID, "0x1234", "verifyingContract"),
        (CHAIN_ID, REGISTRY[:2] + REGISTRY[2:].swapcase(), "verifyingContract"),
    ],
)
def test_bad_domain_is_rejected(chain_id: int, contract: str, field: str) -> None:
    with pytest.raises(InvalidDomainError) as info:
        domain_separator(chain_id, contract)
    assert info.value.field == field
    with pytest.raises(InvalidDomainError):
        typed_data(_reading(), chain_id, contract)


def test_did_pkh() -> None:
    assert did_pkh(CHAIN_ID, ADDRESS.lower()) == f"did:pkh:eip155:31337:{ADDRESS}"
    assert DeviceKey(bytes.fromhex("01" * 32)).did(1) == f"did:pkh:eip155:1:{ADDRESS}"
    with pytest.raises(InvalidDomainError):
        did_pkh(0, ADDRESS)
    with pytest.raises(InvalidReadingError):
        did_pkh(1, "0xnope")
