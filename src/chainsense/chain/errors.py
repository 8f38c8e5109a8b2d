"""Decode revert data into the custom error that caused it, from the shipped ABIs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from chainsense.contracts import artifact_names, load_artifact

__all__ = ["ErrorDecoder"]

_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
_ERROR = bytes.fromhex("08c379a0")  # Error(string)


def _abi_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


class ErrorDecoder:
    """Maps 4-byte error selectors to names and argument decoders, from ABI ``error`` entries."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]] | None = None) -> None:
        if abis is None:
            abis = (load_artifact(n).abi for n in artifact_names())
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(p) for p in item["inputs"]]
                names = [p["name"] or f"arg{i}" for i, p in enumerate(item["inputs"])]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                self._errors[selector] = (item["name"], names, types)

    def decode(self, data: str | bytes | None) -> tuple[str | None, dict[str, Any]]:
        """Return ``(error_name, {arg: value})``; ``(None, {})`` when the data is unknown."""
        raw = _to_bytes(data)
        if len(raw) < 4:
            return None, {}
        selector, body = raw[:4], raw[4:]
        try:
            if selector == _ERROR:
                return "Error", {"message": decode(["string"], body)[0]}
            if selector == _PANIC:
                return "Panic", {"code": decode(["uint256"], body)[0]}
            known = self._errors.get(selector)
            if known is None:
                return None, {}
            name, names, types = known
            values = decode(types, body)
        except Exception:  # malformed data from a foreign contract: report it undecoded
            return None, {}
        return name, {
            n: to_checksum_address(v) if t == "address" else _plain(v)
            for n, t, v in zip(names, types, values, strict=True)
        }


def _to_bytes(data: str | bytes | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    text = data.removeprefix("0x")
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value
