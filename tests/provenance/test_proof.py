"""The proof document format: a strict parser that names the offending field, and a lossless
JSON round trip."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from chainsense.identity import DeviceKey, struct_hash
from chainsense.provenance import (
    FORMAT,
    AnchorRef,
    DomainRef,
    MerkleTree,
    ProofDocument,
    ProofFormatError,
    leaf_of,
)
from tests.provenance.support import COLD, schema_ref

KEY = DeviceKey(b"\x07" * 32)
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _document() -> dict[str, Any]:
    readings = [
        KEY.reading(seq=i, timestamp=1_763_700_000_000 + i, schema=COLD.id, values=(415, -i))
        for i in (1, 2, 3)
    ]
    hashes = [struct_hash(r) for r in readings]
    tree = MerkleTree(hashes)
    return ProofDocument(
        reading=readings[0],
        signature=KEY.sign(readings[0], 31337, REGISTRY),
        domain=DomainRef(chain_id=31337, verifying_contract=REGISTRY),
        schema=schema_ref(COLD),
        struct_hash=hashes[0],
        leaf=leaf_of(hashes[0]),
        proof=tuple(tree.proof(hashes[0])),
        root=tree.root,
        anchor=AnchorRef(
            chain_id=31337,
            contract=REGISTRY,
            tx_hash=b"\x01" * 32,
            block_number=12,
            block_time=1_763_700_005,
            block_hash=b"\x02" * 32,
            tx_index=0,
            header_rlp=b"\xc0",
            receipt_proof=(b"\xc1\x80",),
        ),
        reading_id=17,
        batch_id=3,
    ).to_json()


def test_roundTrip_isLossless_throughJsonText() -> None:
    raw = _document()
    assert raw["format"] == FORMAT
    doc = ProofDocument.from_json(json.loads(json.dumps(raw)))
    assert doc.to_json() == raw
    assert doc.reading_id == 17
    assert doc.batch_id == 3


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(_document())
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["format"], "chainsense.proof.v1", "format"),
        (["format"], KeyError, "format"),
        (["reading"], KeyError, "reading"),
        (["reading", "seq"], "²", "reading.seq"),
        (["reading", "seq"], 7, "reading.seq"),
        (["reading", "seq"], "07", "reading.seq"),
        (["reading", "seq"], str(2**64), "reading.seq"),
        (["reading", "timestamp_ms"], KeyError, "reading.timestamp_ms"),
        (["reading", "values", 1], 1.5, "reading.values[1]"),
        (["reading", "values", 1], "-0", "reading.values[1]"),
        (["reading", "values", 1], str(2**63), "reading.values[1]"),
        (["reading", "device"], "0x" + "ab" * 19, "reading.device"),
        (["reading", "signature"], "0x" + "11" * 64, "reading.signature"),
        (["reading", "extra"], "x", "reading.extra"),
        (["domain", "chain_id"], "²", "domain.chain_id"),
        (["domain", "name"], KeyError, "domain.name"),
        (["domain", "version"], KeyError, "domain.version"),
        (["domain", "verifying_contract"], KeyError, "domain.verifying_contract"),
        (["schema"], None, "schema"),
        (["schema", "metrics", 0, "scale"], 2, "schema.metrics[0].scale"),
        (["schema", "metrics", 0, "scale"], "128", "schema.metrics[0].scale"),
        (["schema", "version"], KeyError, "schema.version"),
        (["schema", "id"], "0x12", "schema.id"),
        (["struct_hash"], "12" * 32, "struct_hash"),
        (["leaf"], "0x" + "zz" * 32, "leaf"),
        (["merkle_proof"], "0x" + "00" * 32, "merkle_proof"),
        (["merkle_proof", 0], "0x" + "00" * 31, "merkle_proof[0]"),
        (["root"], None, "root"),
        (["anchor", "tx_hash"], KeyError, "anchor.tx_hash"),
        (["anchor", "block_number"], "-1", "anchor.block_number"),
        (["anchor", "block_time_s"], True, "anchor.block_time_s"),
        (["anchor", "chain_id"], str(2**256), "anchor.chain_id"),
        (["anchor", "contract"], "nope", "anchor.contract"),
        (["anchor", "header_rlp"], "0x0", "anchor.header_rlp"),
        (["anchor", "receipt_proof"], ["0x00"] * 65, "anchor.receipt_proof"),
        (["reading_id"], "x", "reading_id"),
        (["reading_id"], KeyError, "reading_id"),
        (["structHash"], "0x" + "00" * 32, "structHash"),
    ],
)
def test_illFormedDocument_namesTheField(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(ProofFormatError) as caught:
        ProofDocument.from_json(_broken(path, value))
    assert caught.value.field == field


def test_notAnObject_isRefused() -> None:
    for value in ([], "proof", None, 3):
        with pytest.raises(ProofFormatError) as caught:
            ProofDocument.from_json(value)
        assert caught.value.field == "$"


def test_everyIntegerIsADecimalString() -> None:
    raw = _document()
    numbers = [
        raw["reading"]["seq"], raw["reading"]["timestamp_ms"], *raw["reading"]["values"],
        raw["domain"]["chain_id"], raw["schema"]["version"],
        *(m["scale"] for m in raw["schema"]["metrics"]),
        *(raw["anchor"][k] for k in ("chain_id", "tx_index", "block_number", "block_time_s")),
        raw["reading_id"], raw["batch_id"],
    ]  # fmt: skip
    assert all(isinstance(n, str) and str(int(n)) == n for n in numbers)


def test_negativeScale_andNullIssuerReferences_areAccepted() -> None:
    raw = _broken(["schema", "metrics", 0, "scale"], "-3")
    raw["reading_id"] = None
    doc = ProofDocument.from_json(raw)
    assert doc.schema.metrics[0].scale == -3
    assert doc.reading_id is None


@pytest.mark.parametrize(
    ("path", "value", "read"),
    [
        (["anchor", "header_rlp"], "0xc101", lambda d: d.anchor.header_rlp),
        (["anchor", "receipt_proof", 0], "0xc17f", lambda d: d.anchor.receipt_proof),
        (["anchor", "block_time_s"], "1763700006", lambda d: d.anchor.block_time),
        (["schema", "metrics", 0, "scale"], "1", lambda d: d.schema.metrics[0].scale),
        (["schema", "metrics", 1, "unit"], "K", lambda d: d.schema.metrics[1].unit),
        (["domain", "name"], "ChainSensf", lambda d: d.domain.name),
        (["merkle_proof", 0], "0x" + "ab" * 32, lambda d: d.proof[0]),
    ],
)
def test_rememberedBlocks_neverHideAChange(path: list[Any], value: Any, read: Any) -> None:
    """The parser remembers the domain, schema and anchor blocks (and bytes32 texts) it has
    seen; a block that differs in any member, under the same block hash or registry, is parsed
    afresh."""
    first = ProofDocument.from_json(_document())
    changed = ProofDocument.from_json(_broken(path, value))
    assert read(changed) != read(first)
    assert changed.to_json() == _broken(path, value)
    again = ProofDocument.from_json(_document())
    assert again.to_json() == _document()


def test_rememberedBlocks_stillRefuseAWrongType() -> None:
    ProofDocument.from_json(_document())
    for path, value, field in [
        (["anchor", "receipt_proof"], [1], "anchor.receipt_proof[0]"),
        (["anchor", "header_rlp"], ["0xc0"], "anchor.header_rlp"),
        (["schema", "metrics", 0, "scale"], 2, "schema.metrics[0].scale"),
        (["domain", "chain_id"], 31337, "domain.chain_id"),
        (["merkle_proof", 0], 7, "merkle_proof[0]"),
    ]:
        with pytest.raises(ProofFormatError) as caught:
            ProofDocument.from_json(_broken(path, value))
        assert caught.value.field == field
