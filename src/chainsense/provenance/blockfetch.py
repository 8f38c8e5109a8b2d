"""Fetching block evidence for a proof: the anchor block's header and the receipts-trie proof of
the anchoring transaction, from any node that serves ``eth_getBlockByNumber`` and
``eth_getBlockReceipts``. A small cache keeps recent blocks, so a batch's proofs (one block)
cost two requests."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from web3.types import RPCEndpoint

from chainsense.chain.client import ChainClient
from chainsense.errors import ChainSenseError
from chainsense.provenance.blockproof import build_header_rlp, build_receipt_proof

__all__ = ["BlockEvidence", "BlockEvidenceSource"]


@dataclass(frozen=True)
class BlockEvidence:
    block_hash: bytes
    tx_index: int
    header_rlp: bytes
    receipt_proof: tuple[bytes, ...]


class BlockEvidenceSource:
    """Block evidence from a chain client (or an RPC URL: a client is opened per fetch), cached
    per (block number, transaction)."""

    def __init__(self, client: ChainClient | str, *, cache: int = 64) -> None:
        self.client = client
        self._cache: OrderedDict[tuple[int, bytes], BlockEvidence] = OrderedDict()
        self._size = cache

    @staticmethod
    async def _request(client: ChainClient, method: str, *params: Any) -> Any:
        provider = client.w3.provider
        response = await client.rpc(
            lambda: provider.make_request(RPCEndpoint(method), list(params))
        )
        if "error" in response:
            raise ChainSenseError(f"{method} failed at {client.rpc_url}: {response['error']}")
        return response["result"]

    async def __call__(self, block_number: int, tx_hash: bytes) -> BlockEvidence:
        key = (block_number, tx_hash)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        if isinstance(self.client, ChainClient):
            evidence = await self._fetch(self.client, block_number, tx_hash)
        else:
            async with ChainClient(self.client) as client:
                evidence = await self._fetch(client, block_number, tx_hash)
        self._cache[key] = evidence
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return evidence

    async def _fetch(self, client: ChainClient, block_number: int, tx_hash: bytes) -> BlockEvidence:
        block = await self._request(client, "eth_getBlockByNumber", hex(block_number), False)
        if block is None:
            raise ChainSenseError(f"block {block_number} is not on the chain")
        receipts = await self._request(client, "eth_getBlockReceipts", block["hash"])
        tx = "0x" + tx_hash.hex()
        index = next(
            (int(r["transactionIndex"], 16) for r in receipts if r["transactionHash"] == tx), None
        )
        if index is None:
            raise ChainSenseError(f"transaction {tx} is not in block {block_number}")
        root, nodes = build_receipt_proof(receipts, index)
        if "0x" + root.hex() != block["receiptsRoot"]:
            raise ChainSenseError(
                f"the receipts of block {block_number} do not hash to its receiptsRoot"
            )
        return BlockEvidence(
            block_hash=bytes.fromhex(block["hash"][2:]),
            tx_index=index,
            header_rlp=build_header_rlp(block),
            receipt_proof=nodes,
        )
