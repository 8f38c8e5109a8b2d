"""/v1/deployment: the published deployment document verifiers pin proofs to."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from chainsense.api.deps import ChainDep
from chainsense.chain.deploy import published_deployment

router = APIRouter(prefix="/deployment", tags=["verify"])


class PublishedContract(BaseModel):
    address: str = Field(examples=["0x5FbDB2315678afecb367f032d93F642f64180aa3"])
    code_hash: str = Field(description="keccak256 of the runtime code at the address")
    artifact_sha256: str = Field(description="sha256 of the compiled artifact deployed")
    tx_hash: str
    block_number: str = Field(description="Decimal string")


class DeploymentDocument(BaseModel):
    format: Literal["chainsense.deployment.v1"]
    chain_id: str = Field(examples=["31337"], description="Decimal string")
    contracts: dict[str, PublishedContract]


@router.get(
    "",
    response_model=DeploymentDocument,
    summary="The deployment document to pin proofs to",
    description=(
        "Chain id, contract addresses, the keccak256 of the runtime code now at each address and "
        "the artifact hashes. Save it and pass it to `chainsense verify --deployment FILE` (or "
        "the JavaScript verifier): a proof naming any other contract then fails `contracts`. "
        "Public, no API key."
    ),
)
async def get_deployment(chain: ChainDep) -> DeploymentDocument:
    document = await published_deployment(chain.client, chain.deployment)
    return DeploymentDocument.model_validate(document)
