"""/v1/chain: which chain ChainSense uses and where its contracts are."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from chainsense.api.deps import ChainDep

router = APIRouter(prefix="/chain", tags=["chain"])


class ContractPublic(BaseModel):
    address: str = Field(examples=["0x5FbDB2315678afecb367f032d93F642f64180aa3"])
    tx_hash: str
    block_number: int
    artifact_sha256: str


class ChainPublic(BaseModel):
    chain_id: int = Field(examples=[31337])
    rpc_url: str
    dev_chain: bool = Field(description="True when ChainSense runs its own local Anvil node")
    block_number: int
    roles: dict[str, str]
    contracts: dict[str, ContractPublic]


@router.get("", response_model=ChainPublic, summary="The chain and the deployed contracts")
async def get_chain(chain: ChainDep) -> ChainPublic:
    dep = chain.deployment
    return ChainPublic(
        chain_id=dep.chain_id,
        rpc_url=chain.client.rpc_url,
        dev_chain=chain.devchain is not None,
        block_number=await chain.client.block_number(),
        roles=dep.roles,
        contracts={
            name: ContractPublic(
                address=c.address,
                tx_hash=c.tx_hash,
                block_number=c.block_number,
                artifact_sha256=c.artifact_sha256,
            )
            for name, c in dep.contracts.items()
        },
    )
