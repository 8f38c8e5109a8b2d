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
        anchor=AnchorRef(31337, REGISTRY, b"\x01" * 32, 12, 1_763_700_005),
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
        (["format"], "chainsense.proof.v0", "format"),
        (["reading"], KeyError, "reading"),
        (["reading", "seq"], "²", "reading.seq"),
        (["reading", "values", 1], 1.5, "reading.values[1]"),
        (["reading", "device"], "0x" + "ab" * 19, "reading.device"),
        (["reading", "signature"], "0x" + "11" * 64, "reading.signature"),
        (["domain", "chainId"], "²", "domain.chainId"),
        (["domain", "verifyingContract"], KeyError, "domain.verifyingContract"),
        (["schema", "metrics", 0, "scale"], "2", "schema.metrics[0].scale"),
        (["schema", "id"], "0x12", "schema.id"),
        (["structHash"], "12" * 32, "structHash"),
        (["leaf"], "0x" + "zz" * 32, "leaf"),
        (["proof"], "0x" + "00" * 32, "proof"),
        (["proof", 1], "0x" + "00" * 31, "proof[1]"),
        (["root"], None, "root"),
        (["anchor", "txHash"], KeyError, "anchor.txHash"),
        (["anchor", "blockNumber"], -1, "anchor.blockNumber"),
        (["anchor", "blockTime"], True, "anchor.blockTime"),
        (["anchor", "chainId"], 2**256, "anchor.chainId"),
        (["anchor", "contract"], "nope", "anchor.contract"),
        (["readingId"], "x", "readingId"),
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


def test_negativeScale_andDecimalStringIntegers_areAccepted() -> None:
    raw = _broken(["schema", "metrics", 0, "scale"], -3)
    raw["anchor"]["blockNumber"] = "12"
    doc = ProofDocument.from_json(raw)
    assert doc.schema is not None
    assert doc.schema.metrics[0].scale == -3
    assert doc.anchor.block_number == 12
