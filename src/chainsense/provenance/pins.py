"""Trust anchors: the published deployment a verifier pins a proof to.

A proof names its own ReadingAnchor and DeviceRegistry; anyone can deploy copies of both from the
published bytecode, register a key and anchor a made-up reading. A verifier therefore never takes
the addresses from the proof: it is given the deployment it trusts, as the operator publishes it
(``GET /v1/deployment``, ``chainsense contracts deployment``) and as an auditor keeps it::

    {"format": "chainsense.deployment.v1", "chain_id": "31337",
     "contracts": {"DeviceRegistry": {"address": "0x…", "code_hash": "0x…",
                                      "artifact_sha256": "…", "tx_hash": "0x…",
                                      "block_number": "1"},
                   "ReadingAnchor": {…}, …}}

``code_hash`` is keccak256 of the runtime code at the address (what ``EXTCODEHASH`` returns);
``artifact_sha256`` is the hash of the compiled artifact it was deployed from (see ``make
contracts``). Or the pins are given explicitly (chain id and two addresses, no code hashes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chainsense.provenance.proof import ProofFormatError

__all__ = ["DEPLOYMENT_FORMAT", "Pins"]

DEPLOYMENT_FORMAT = "chainsense.deployment.v1"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Pins:
    """The chain and the two contracts a proof must name; code hashes when published."""

    chain_id: int
    registry: str
    anchor: str
    registry_code_hash: bytes | None = None
    anchor_code_hash: bytes | None = None
    source: str = "explicit addresses"

    @classmethod
    def from_document(cls, obj: Any, *, source: str = "deployment document") -> Pins:
        """Pins from a published deployment document (:class:`ProofFormatError` names the
        bad field)."""
        if not isinstance(obj, Mapping):
            raise ProofFormatError("$", "a deployment document is an object")
        if obj.get("format") != DEPLOYMENT_FORMAT:
            raise ProofFormatError("format", f"expected {DEPLOYMENT_FORMAT!r}")
        chain = obj.get("chain_id")
        if not isinstance(chain, str) or not chain.isdecimal() or not chain.isascii():
            raise ProofFormatError("chain_id", "expected a decimal string")
        contracts = obj.get("contracts")
        if not isinstance(contracts, Mapping):
            raise ProofFormatError("contracts", "expected an object")

        def entry(name: str) -> tuple[str, bytes]:
            item = contracts.get(name)
            if not isinstance(item, Mapping):
                raise ProofFormatError(f"contracts.{name}", "missing")
            address, code_hash = item.get("address"), item.get("code_hash")
            if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
                raise ProofFormatError(f"contracts.{name}.address", "expected a 20-byte address")
            if not isinstance(code_hash, str) or not _HASH.fullmatch(code_hash):
                raise ProofFormatError(f"contracts.{name}.code_hash", "expected 32 bytes of hex")
            return address, bytes.fromhex(code_hash[2:])

        registry, registry_hash = entry("DeviceRegistry")
        anchor, anchor_hash = entry("ReadingAnchor")
        return cls(int(chain), registry, anchor, registry_hash, anchor_hash, source)

    def describe(self) -> str:
        return (
            f"chain {self.chain_id}, DeviceRegistry {self.registry}, ReadingAnchor {self.anchor} "
            f"({self.source})"
        )

    def mismatches(self, *, chain_ids: Mapping[str, int], registry: str, anchor: str) -> list[str]:
        """What a proof names that these pins do not: empty when it names exactly them."""
        wrong = [
            f"{label} is {value}, the pinned chain is {self.chain_id}"
            for label, value in chain_ids.items()
            if value != self.chain_id
        ]
        if registry.lower() != self.registry.lower():
            wrong.append(
                f"domain.verifying_contract {registry} is not the pinned DeviceRegistry "
                f"{self.registry}"
            )
        if anchor.lower() != self.anchor.lower():
            wrong.append(f"anchor.contract {anchor} is not the pinned ReadingAnchor {self.anchor}")
        return wrong
