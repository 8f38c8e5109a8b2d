"""ethers v6 signs the same bytes as eth-account and sign_reading, and ReadingVerifier recovers
them. One node process signs every reading."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chainsense.identity import DeviceKey, Reading, ReadingVerifier, typed_data

from ._support import CHAIN_ID, REGISTRY, ReadingFactory

pytestmark = pytest.mark.node

SCRIPT = Path(__file__).with_name("sign_ethers.mjs")


def _stringify_ints(value: Any) -> Any:
    """JSON for JavaScript: integers as decimal strings (ethers takes them as BigNumberish)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [_stringify_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _stringify_ints(v) for k, v in value.items()}
    return value


def _sign_with_ethers(
    pairs: list[tuple[DeviceKey, Reading]], chain_id: int, contract: str
) -> list[dict[str, str]]:
    node = shutil.which("node")
    assert node is not None, "node is required for tests marked 'node'"
    items = []
    for key, reading in pairs:
        full = typed_data(reading, chain_id, contract)
        types = {k: v for k, v in full["types"].items() if k != "EIP712Domain"}
        items.append(
            {
                "key": "0x" + key.private_key.hex(),
                "domain": _stringify_ints(full["domain"]),
                "types": types,
                "message": _stringify_ints(full["message"]),
            }
        )
    done = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps({"items": items}).encode(),
        capture_output=True,
        timeout=120,
        check=False,
        cwd=SCRIPT.parent,
    )
    assert done.returncode == 0, done.stderr.decode()
    output = json.loads(done.stdout)
    assert output["ethers"].startswith("6.")
    results: list[dict[str, str]] = output["results"]
    assert len(results) == len(pairs)
    return results


def test_ethers_signatures_are_identical_and_recovered(
    make_readings: ReadingFactory, verifier: ReadingVerifier
) -> None:
    from eth_account import Account

    pairs = make_readings(5, count=300)
    results = _sign_with_ethers(pairs, CHAIN_ID, REGISTRY)
    for (key, reading), result in zip(pairs, results, strict=True):
        ethers_sig = bytes.fromhex(result["signature"][2:])
        assert result["address"] == key.address
        assert bytes.fromhex(result["digest"][2:]) == verifier.digest(reading)
        ours = key.sign(reading, CHAIN_ID, REGISTRY)
        theirs = Account.sign_typed_data(
            key.private_key, full_message=typed_data(reading, CHAIN_ID, REGISTRY)
        ).signature
        assert ethers_sig == ours == bytes(theirs), reading
        assert verifier.recover(reading, ethers_sig) == key.address


def test_ethers_signature_for_other_domain_is_rejected(
    make_readings: ReadingFactory, verifier: ReadingVerifier
) -> None:
    pairs = make_readings(6, count=5)
    results = _sign_with_ethers(pairs, CHAIN_ID + 1, REGISTRY)
    for (_, reading), result in zip(pairs, results, strict=True):
        assert not verifier.verify(reading, bytes.fromhex(result["signature"][2:]))
