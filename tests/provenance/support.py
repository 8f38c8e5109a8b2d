"""A real provenance chain for the tests: a DeviceRegistry and a ReadingAnchor on Anvil, devices
registered with Anvil dev keys, readings they sign, and proof documents for a batch whose root
the anchorer anchored. Nothing here touches the platform's store: proofs are built the way any
issuer would build them, from the chain's own receipts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3.types import RPCEndpoint

from chainsense.chain import ChainClient, Signer
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.identity import DeviceKey, Reading, keccak256, struct_hash
from chainsense.provenance import (
    AnchorRef,
    DomainRef,
    MerkleTree,
    MetricRef,
    ProofDocument,
    SchemaRef,
    leaf_of,
)
from chainsense.provenance.blockfetch import BlockEvidenceSource
from chainsense.provenance.pins import Pins
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS, Schema

__all__ = ["COLD", "METER", "Chain", "device_keys", "schema_ref"]

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1")
T0 = 1_763_700_000_000


def device_keys() -> list[DeviceKey]:
    """Anvil dev keys 5..9 as device keys (0..4 play the admin, operator, anchorer... roles)."""
    return [DeviceKey(bytes.fromhex(k[2:])) for k in ANVIL_DEV_KEYS[5:10]]


def schema_ref(schema: Schema) -> SchemaRef:
    return SchemaRef(
        id=schema.id,
        name=schema.name,
        version=schema.version,
        metrics=tuple(MetricRef(m.name, m.unit, m.scale) for m in schema.metrics),
    )


@dataclass
class Chain:
    """The contracts of one deployment on a running Anvil, and the signers that drive them."""

    rpc_url: str
    client: ChainClient
    operator: Signer
    anchorer: Signer
    registry: str
    anchor: str
    chain_id: int

    @property
    def pins(self) -> Pins:
        return Pins(self.chain_id, self.registry, self.anchor)

    def renew_signers(self) -> None:
        """Fresh signers, which re-read their nonces (after an ``evm_revert``)."""
        self.operator = Signer(self.client, self.operator.account.key)
        self.anchorer = Signer(self.client, self.anchorer.account.key)

    async def rpc(self, method: str, *params: Any) -> Any:
        response = await self.client.w3.provider.make_request(RPCEndpoint(method), list(params))
        assert "error" not in response, f"{method}: {response['error']}"
        return response["result"]

    async def advance(self, seconds: int = 10) -> None:
        """Move the chain clock on, so the next block's time is strictly later."""
        await self.rpc("evm_increaseTime", seconds)
        await self.rpc("evm_mine")

    async def register(self, key: DeviceKey) -> None:
        registry = self.client.contract("DeviceRegistry", self.registry)
        fn = registry.functions.register(key.address, self.operator.address, bytes(32))
        await self.operator.transact(fn)

    async def revoke(self, key: DeviceKey) -> None:
        registry = self.client.contract("DeviceRegistry", self.registry)
        await self.operator.transact(registry.functions.revoke(key.address))

    def sign(
        self,
        key: DeviceKey,
        seq: int,
        values: tuple[int, ...] = (415, 620),
        schema: Schema = COLD,
    ) -> tuple[Reading, bytes]:
        reading = key.reading(seq=seq, timestamp=T0 + seq * 1000, schema=schema.id, values=values)
        return reading, key.sign(reading, self.chain_id, self.registry)

    async def anchor_batch(
        self, items: Sequence[tuple[Reading, bytes]], *, label: str = "batch"
    ) -> list[ProofDocument]:
        """Build the tree of ``items``, anchor its root, and return one proof per reading."""
        hashes = [struct_hash(r) for r, _ in items]
        tree = MerkleTree(hashes)
        contract = self.client.contract("ReadingAnchor", self.anchor)
        receipt = await self.anchorer.transact(
            contract.functions.anchor(tree.root, len(items), keccak256(label.encode()))
        )
        block = await self.client.w3.eth.get_block(receipt["blockNumber"])
        tx_hash = bytes(receipt["transactionHash"])
        evidence = await BlockEvidenceSource(self.client)(receipt["blockNumber"], tx_hash)
        anchor = AnchorRef(
            chain_id=self.chain_id,
            contract=self.anchor,
            tx_hash=tx_hash,
            block_number=receipt["blockNumber"],
            block_time=block["timestamp"],
            block_hash=evidence.block_hash,
            tx_index=evidence.tx_index,
            header_rlp=evidence.header_rlp,
            receipt_proof=evidence.receipt_proof,
        )
        schemas = {s.id: s for s in (COLD, METER)}
        return [
            ProofDocument(
                reading=reading,
                signature=signature,
                domain=DomainRef(chain_id=self.chain_id, verifying_contract=self.registry),
                schema=schema_ref(schemas[reading.schema]),
                struct_hash=h,
                leaf=leaf_of(h),
                proof=tuple(tree.proof(h)),
                root=tree.root,
                anchor=anchor,
            )
            for (reading, signature), h in zip(items, hashes, strict=True)
        ]
