"""/v1/verify: check a proof document. Public: verifying needs no API key and no trust in this
platform; with ``onchain=true`` the anchor and the device key are checked against the chain this
platform is connected to (anyone can do the same with ``chainsense verify --rpc`` and any RPC)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from chainsense.api.deps import ChainDep
from chainsense.api.errors import PROBLEM_JSON
from chainsense.provenance.models import ProofPublic, VerdictPublic
from chainsense.provenance.proof import ProofDocument
from chainsense.provenance.verify import verify_offline, verify_onchain

router = APIRouter(prefix="/verify", tags=["verify"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


@router.post(
    "",
    response_model=VerdictPublic,
    summary="Verify a proof document",
    description=(
        "Runs the named checks on a `chainsense.proof.v1` document and answers 200 with the "
        "verdict, valid or not: offline `schema`, `domain`, `signature`, `leaf`, `merkle-path`; "
        "with `onchain=true` also `chain`, `anchor`, `transaction`, `block` and `device`, "
        "against this platform's chain RPC. A document that is not a proof document gets 422 "
        "naming the field. No API key: verifying is public."
    ),
    responses={
        422: _PROBLEM | {"description": "Not a proof document (the problem names the field)"}
    },
)
async def verify(
    document: ProofPublic,
    chain: ChainDep,
    onchain: Annotated[
        bool, Query(description="Also check the anchor and the device key on-chain")
    ] = False,
) -> VerdictPublic:
    doc = ProofDocument.from_json(
        document.model_dump(mode="json", by_alias=True, exclude_unset=True)
    )
    verdict = await verify_onchain(doc, chain.client) if onchain else verify_offline(doc)
    return VerdictPublic.of(verdict)
