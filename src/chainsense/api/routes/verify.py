"""/v1/verify: check a proof document against this platform's own deployment (the pins are
``GET /v1/deployment``). Public: no API key. With ``onchain=true`` the block hash, the pinned
contracts' code and the device key are checked against the chain this platform is connected to;
anyone can do the same with ``chainsense verify --deployment FILE --rpc URL``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from chainsense.api.deps import ChainDep
from chainsense.api.errors import PROBLEM_JSON
from chainsense.chain.deploy import published_deployment
from chainsense.provenance.models import ProofPublic, VerdictPublic
from chainsense.provenance.pins import Pins
from chainsense.provenance.proof import ProofDocument
from chainsense.provenance.verify import verify_offline
from chainsense.provenance.verify_rpc import verify_onchain

router = APIRouter(prefix="/verify", tags=["verify"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


@router.post(
    "",
    response_model=VerdictPublic,
    summary="Verify a proof document",
    description=(
        "Runs the named checks on a `chainsense.proof.v2` document, pinned to this platform's "
        "deployment, and answers 200 with the verdict (`valid`, `invalid` or `incomplete`): "
        "`contracts`, `schema`, `domain`, `signature`, `leaf`, `merkle-path`, `header`, "
        "`receipt`, `block`; with `onchain=true` the block hash is confirmed canonical on this "
        "platform's chain and `code` and `device` run too. Without it `block` is not checked "
        "(the verdict is incomplete). A document that is not a v2 proof gets 422 naming the "
        "field. No API key: verifying is public."
    ),
    responses={
        422: _PROBLEM | {"description": "Not a proof document (the problem names the field)"}
    },
)
async def verify(
    document: ProofPublic,
    chain: ChainDep,
    onchain: Annotated[
        bool, Query(description="Also check the block hash, code and device key on-chain")
    ] = False,
) -> VerdictPublic:
    doc = ProofDocument.from_json(document.model_dump(mode="json", by_alias=True))
    if onchain:
        published = await published_deployment(chain.client, chain.deployment)
        pins = Pins.from_document(published, source="this platform's deployment")
        verdict = await verify_onchain(doc, chain.client, pins=pins)
    else:
        dep = chain.deployment
        pins = Pins(
            dep.chain_id,
            dep.address("DeviceRegistry"),
            dep.address("ReadingAnchor"),
            source="this platform's deployment",
        )
        verdict = verify_offline(doc, pins=pins)
    return VerdictPublic.of(verdict)
