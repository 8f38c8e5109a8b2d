"""Helpers shared by the contract tests.

- deployment and transactions against the test Anvil (its dev accounts are unlocked);
- :func:`assert_reverts`: a call *and* a mined transaction revert with one custom error, decoded
  against the contract ABI (selector = first 4 bytes of keccak256 of the error signature);
- :func:`emitted`: every event a transaction emitted from one contract, decoded, in order;
- EIP-712 readings signed with eth-account, or with ethers v6 through ``sign_ethers.mjs``;
- :func:`standard_leaf`: the StandardMerkleTree leaf of a ``bytes32``, computed with eth-abi and
  eth-utils as an independent reference (the trees themselves are ``chainsense.provenance.
  MerkleTree``, checked against ``@openzeppelin/merkle-tree`` through :func:`oz_merkle_trees`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ABIElement, ChecksumAddress, HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.types import RPCEndpoint, TxParams, TxReceipt

from chainsense.contracts import load_artifact

__all__ = [
    "READING_TYPES",
    "SECP256K1_N",
    "ZERO_ADDRESS",
    "ZERO_BYTES32",
    "Reading",
    "Roles",
    "assert_reverts",
    "decode_revert",
    "deploy",
    "deploy_with_receipt",
    "emitted",
    "error_selector",
    "make_account",
    "oz_merkle_trees",
    "reading_digest",
    "reading_struct_hash",
    "rpc",
    "run_node",
    "send",
    "sign_reading",
    "sign_with_ethers",
    "standard_leaf",
    "typed_data",
]

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

ZERO_ADDRESS = cast(ChecksumAddress, "0x" + "00" * 20)
ZERO_BYTES32 = bytes(32)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
EXPECTED_REVERT_GAS = 3_000_000
"""Gas limit for transactions that are expected to revert (skips gas estimation, which would
fail before anything is mined)."""

Call = ContractFunction | ContractConstructor


@dataclass(frozen=True)
class Roles:
    """The funded Anvil dev accounts, by the part they play in the tests."""

    admin: LocalAccount
    """Dev key 0: DEFAULT_ADMIN_ROLE on both contracts, and the deployer."""
    operator: LocalAccount
    """Dev key 1: OPERATOR_ROLE on the DeviceRegistry."""
    anchorer: LocalAccount
    """Dev key 2: ANCHORER_ROLE on the ReadingAnchor."""
    stranger: LocalAccount
    """Dev key 3: no role anywhere."""
    owner: LocalAccount
    """Dev key 4: a device owner (no role)."""


# --- JSON-RPC, accounts, deployment, transactions -----------------------------------------------


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """Raw JSON-RPC call; fails the test on an error response."""
    response = w3.provider.make_request(RPCEndpoint(method), list(params))
    assert "error" not in response, f"{method} failed: {response['error']}"
    return response["result"]


def make_account(label: str) -> LocalAccount:
    """A deterministic, unfunded account (devices and other keys that never send transactions)."""
    account: LocalAccount = Account.from_key(keccak(text=f"chainsense-tests/{label}"))
    return account


def send(call: Call, *, sender: str) -> TxReceipt:
    """Send ``call`` from an unlocked dev account, wait for it, and require success."""
    tx_hash = call.transact({"from": to_checksum_address(sender)})
    receipt = call.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 1, f"transaction {tx_hash.to_0x_hex()} failed"
    return receipt


def deploy_with_receipt(w3: Web3, name: str, *args: Any, sender: str) -> tuple[Contract, TxReceipt]:
    """Deploy the shipped artifact ``name`` with constructor ``args``; also return the receipt."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=HexStr(artifact.bytecode))
    receipt = send(factory.constructor(*args), sender=sender)
    address = receipt["contractAddress"]
    assert address is not None
    return w3.eth.contract(address=address, abi=artifact.abi), receipt


def deploy(w3: Web3, name: str, *args: Any, sender: str) -> Contract:
    """Deploy the shipped artifact ``name`` with constructor ``args``."""
    return deploy_with_receipt(w3, name, *args, sender=sender)[0]


# --- reverts ------------------------------------------------------------------------------------


def _canonical_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind.removeprefix('tuple')}"
    return kind


def _error_types(error: dict[str, Any]) -> list[str]:
    return [_canonical_type(p) for p in error["inputs"]]


def error_selector(error: dict[str, Any]) -> bytes:
    """The 4-byte selector of an ABI error entry."""
    return keccak(text=f"{error['name']}({','.join(_error_types(error))})")[:4]


def _normalize(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list | tuple):
        return tuple(_normalize(v) for v in value)
    return value


def decode_revert(abi: Sequence[ABIElement], data: bytes) -> tuple[str, tuple[Any, ...]]:
    """Decode revert ``data`` as one of the custom errors of ``abi``: (name, args)."""
    errors = [cast(dict[str, Any], e) for e in abi if e["type"] == "error"]
    for error in errors:
        if data[:4] == error_selector(error):
            args = abi_decode(_error_types(error), data[4:])
            return error["name"], _normalize(args)
    raise AssertionError(f"revert data 0x{data.hex()} matches no custom error of the ABI")


def _abi_of(call: Call) -> Sequence[ABIElement]:
    if isinstance(call, ContractFunction):
        return call.contract_abi
    return call.abi


def _tx_json(call: Call, sender: str) -> dict[str, Any]:
    tx = call.build_transaction({"from": to_checksum_address(sender), "gas": EXPECTED_REVERT_GAS})
    out: dict[str, Any] = {
        "from": to_checksum_address(sender),
        "data": tx["data"],
        "gas": hex(EXPECTED_REVERT_GAS),
    }
    if tx.get("to"):
        out["to"] = tx["to"]
    return out


def _revert_data_of_call(w3: Web3, tx: dict[str, Any]) -> bytes:
    response = w3.provider.make_request(RPCEndpoint("eth_call"), [tx, "latest"])
    assert "error" in response, f"eth_call did not revert; it returned {response.get('result')}"
    error = response["error"]
    data = error.get("data") if isinstance(error, dict) else None
    assert isinstance(data, str), f"eth_call reverted without revert data: {error}"
    return bytes.fromhex(data.removeprefix("0x"))


def _revert_data_of_mined_tx(w3: Web3, tx: dict[str, Any]) -> bytes:
    tx_hash = w3.eth.send_transaction(cast(TxParams, tx))
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 0, "the mined transaction did not revert"
    trace = rpc(w3, "debug_traceTransaction", tx_hash.to_0x_hex(), {"tracer": "callTracer"})
    return bytes.fromhex(str(trace.get("output", "0x")).removeprefix("0x"))


def assert_reverts(call: Call, error: str, *args: Any, sender: str, mined: bool = True) -> None:
    """Require that ``call`` sent by ``sender`` reverts with custom error ``error(*args)``.

    Checks ``eth_call`` first; with ``mined`` (the default) it then also mines the transaction
    with an explicit gas limit and checks the on-chain revert data (from the call trace).
    """
    w3 = call.w3
    abi = _abi_of(call)
    tx = _tx_json(call, sender)
    expected = (error, _normalize(args))
    assert decode_revert(abi, _revert_data_of_call(w3, tx)) == expected
    if mined:
        assert decode_revert(abi, _revert_data_of_mined_tx(w3, tx)) == expected


# --- events -------------------------------------------------------------------------------------


def emitted(contract: Contract, receipt: TxReceipt) -> list[tuple[str, dict[str, Any]]]:
    """Every event ``contract`` emitted in ``receipt``, in log order, as (name, args)."""
    by_topic: dict[bytes, str] = {}
    for entry in contract.abi:
        if entry["type"] == "event":
            event = cast(dict[str, Any], entry)
            types = ",".join(_canonical_type(p) for p in event["inputs"])
            by_topic[keccak(text=f"{event['name']}({types})")] = event["name"]
    out: list[tuple[str, dict[str, Any]]] = []
    for log in receipt["logs"]:
        if log["address"] != contract.address:
            continue
        name = by_topic[bytes(log["topics"][0])]
        decoded = getattr(contract.events, name)().process_log(log)
        out.append((name, {k: _normalize(v) for k, v in decoded["args"].items()}))
    return out


# --- EIP-712 readings ---------------------------------------------------------------------------


READING_TYPES: dict[str, list[dict[str, str]]] = {
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
}


@dataclass(frozen=True)
class Reading:
    """A ChainSense reading, as the contracts and signers see it."""

    device: ChecksumAddress
    seq: int
    timestamp: int
    schema: bytes
    values: tuple[int, ...]

    def as_abi(self) -> tuple[ChecksumAddress, int, int, bytes, list[int]]:
        """The ``Reading`` struct as a contract call argument."""
        return (self.device, self.seq, self.timestamp, self.schema, list(self.values))

    def as_message(self) -> dict[str, Any]:
        """The EIP-712 message for eth-account."""
        return {
            "device": self.device,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "schema": self.schema,
            "values": list(self.values),
        }

    def replace(self, **changes: Any) -> Reading:
        return dataclasses.replace(self, **changes)


def _domain(chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {
        "name": "ChainSense",
        "version": "1",
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def typed_data(reading: Reading, *, chain_id: int, verifying_contract: str) -> dict[str, Any]:
    """The full EIP-712 typed-data document of ``reading`` under the ChainSense domain."""
    return {
        "types": READING_TYPES,
        "primaryType": "Reading",
        "domain": _domain(chain_id, verifying_contract),
        "message": reading.as_message(),
    }


def sign_reading(
    key: LocalAccount | str, reading: Reading, *, chain_id: int, verifying_contract: str
) -> bytes:
    """65-byte (r, s, v) EIP-712 signature of ``reading`` by eth-account."""
    private_key = key.key if isinstance(key, LocalAccount) else key
    full = typed_data(reading, chain_id=chain_id, verifying_contract=verifying_contract)
    return bytes(Account.sign_typed_data(private_key, full_message=full).signature)


def reading_struct_hash(reading: Reading, *, chain_id: int, verifying_contract: str) -> bytes:
    """hashStruct(reading), as eth-account computes it."""
    full = typed_data(reading, chain_id=chain_id, verifying_contract=verifying_contract)
    return bytes(encode_typed_data(full_message=full).body)


def reading_digest(reading: Reading, *, chain_id: int, verifying_contract: str) -> bytes:
    """The EIP-712 digest eth-account signs for ``reading``."""
    message = encode_typed_data(
        full_message=typed_data(reading, chain_id=chain_id, verifying_contract=verifying_contract)
    )
    return keccak(b"\x19" + message.version + message.header + message.body)


def run_node(script: str, payload: Any) -> Any:
    """Run ``tests/contracts/<script>`` with node, JSON ``payload`` on stdin; return its JSON."""
    node = shutil.which("node")
    assert node is not None, "node is not on PATH (needed by the tests marked `node`)"
    result = subprocess.run(  # fixed argv, no shell
        [node, str(HERE / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stderr}"
    return json.loads(result.stdout)


def sign_with_ethers(jobs: Iterable[tuple[LocalAccount, Reading, int, str]]) -> list[bytes]:
    """Sign readings with ethers v6 ``Wallet.signTypedData`` (one node process for all jobs).

    Each job is (key, reading, chain id, verifying contract). Integers travel as decimal strings.
    """
    payload = [
        {
            "privateKey": "0x" + bytes(key.key).hex(),
            "domain": {**_domain(chain_id, contract), "chainId": str(chain_id)},
            "reading": {
                "device": reading.device,
                "seq": str(reading.seq),
                "timestamp": str(reading.timestamp),
                "schema": "0x" + reading.schema.hex(),
                "values": [str(v) for v in reading.values],
            },
        }
        for key, reading, chain_id, contract in jobs
    ]
    signatures: list[str] = run_node("sign_ethers.mjs", payload)
    return [bytes.fromhex(s.removeprefix("0x")) for s in signatures]


def oz_merkle_trees(trees: Sequence[Sequence[bytes]]) -> list[tuple[bytes, list[list[bytes]]]]:
    """Root and per-value proofs of each tree, built by ``@openzeppelin/merkle-tree``."""
    payload = [["0x" + v.hex() for v in values] for values in trees]
    built: list[dict[str, Any]] = run_node("oz_merkle_tree.mjs", payload)
    return [
        (
            bytes.fromhex(t["root"].removeprefix("0x")),
            [[bytes.fromhex(h.removeprefix("0x")) for h in proof] for proof in t["proofs"]],
        )
        for t in built
    ]


# --- OpenZeppelin StandardMerkleTree leaves (trees: chainsense.provenance.MerkleTree) -----------


def standard_leaf(value: bytes) -> bytes:
    """The StandardMerkleTree leaf of one ``bytes32`` value: keccak256(keccak256(abi.encode(v)))."""
    return keccak(keccak(abi_encode(["bytes32"], [value])))
