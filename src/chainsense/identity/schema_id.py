"""Schema ids: a content hash of the whole schema definition.

A schema id commits to the schema's name, its version and its ordered metrics with their SenML
units and decimal scales, so that a verifier recomputes it from a proof's schema block and a
changed unit or scale changes the id (and breaks the device's signature, which covers the id)::

    schemaId = keccak256(abi.encode(string name, uint32 version,
                                    (string name, string unit, int8 scale)[] metrics))

``abi.encode`` is the Solidity ABI's canonical encoding (head/tail, 32-byte words, strings as
UTF-8), so the same id comes out of Solidity, viem's ``encodeAbiParameters`` and eth-abi. The
encoder is written out here (a few words of ABI) to keep the verifier's imports light; a test
compares it with eth-abi.

>>> cold = [("temperature", "Cel", 2), ("humidity", "%RH", 1)]
>>> schema_id("chainsense.coldchain.v1", 1, cold).hex()[:16]
'2df06fcb52c19b21'
"""

from __future__ import annotations

from collections.abc import Iterable

from chainsense.identity._keccak import keccak256

__all__ = ["SCALE_MAX", "SCALE_MIN", "VERSION_MAX", "schema_id", "schema_id_encoding"]

SCALE_MIN, SCALE_MAX = -128, 127  # int8
VERSION_MAX = 2**32 - 1  # uint32


def _word(value: int) -> bytes:
    return (value % 2**256).to_bytes(32)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _word(len(raw)) + raw + bytes(-len(raw) % 32)


def _metric(name: str, unit: str, scale: int) -> bytes:
    if not SCALE_MIN <= scale <= SCALE_MAX:
        raise ValueError(f"scale {scale} of {name!r} is not an int8")
    a, b = _string(name), _string(unit)
    return _word(96) + _word(96 + len(a)) + _word(scale) + a + b


def schema_id_encoding(name: str, version: int, metrics: Iterable[tuple[str, str, int]]) -> bytes:
    """``abi.encode(name, version, metrics)``: the bytes the schema id hashes."""
    if not 0 <= version <= VERSION_MAX:
        raise ValueError(f"schema version {version} is not a uint32")
    parts = [_metric(*m) for m in metrics]
    offsets, at = [], 32 * len(parts)
    for part in parts:
        offsets.append(_word(at))
        at += len(part)
    array = _word(len(parts)) + b"".join(offsets) + b"".join(parts)
    head_name = _string(name)
    return _word(96) + _word(version) + _word(96 + len(head_name)) + head_name + array


def schema_id(name: str, version: int, metrics: Iterable[tuple[str, str, int]]) -> bytes:
    """The schema id: keccak256 of :func:`schema_id_encoding`."""
    return keccak256(schema_id_encoding(name, version, metrics))
