"""Proof documents, verdicts, batches and the anchoring status at the API edge (pydantic, for
OpenAPI).

``ProofPublic`` documents the ``chainsense.proof.v1`` shape (:mod:`chainsense.provenance.proof`):
``POST /v1/verify`` takes it, and a route that hands proofs out can return it. The domain forms
are :class:`~chainsense.provenance.proof.ProofDocument` (parsed strictly, naming the bad field)
and :class:`~chainsense.provenance.verify.Verdict`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chainsense.provenance.proof import MAX_PROOF_STEPS
from chainsense.provenance.verify import Verdict

__all__ = [
    "AnchorPublic",
    "AnchoringStatus",
    "BatchPage",
    "BatchPublic",
    "CheckPublic",
    "DomainPublic",
    "MetricRefPublic",
    "ProofPending",
    "ProofPublic",
    "ProofReadingPublic",
    "SchemaRefPublic",
    "VerdictPublic",
]

_HEX32 = r"^0x[0-9a-fA-F]{64}$"
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_UINT = int | str


class ProofReadingPublic(BaseModel):
    """The signed reading in its raw JSON form, with its signature."""

    device: str = Field(pattern=_ADDRESS)
    seq: _UINT
    timestamp: _UINT = Field(description="Device clock, ms since the Unix epoch")
    schema_: str = Field(alias="schema", pattern=_HEX32, description="keccak256 of the name")
    values: list[_UINT] = Field(description="int64 fixed-point values in the schema's order")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65 bytes r, s, v")


class DomainPublic(BaseModel):
    """The EIP-712 domain the device signed in; ``verifyingContract`` is the DeviceRegistry."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = "ChainSense"
    version: str = "1"
    chain_id: int = Field(alias="chainId", ge=0)
    verifying_contract: str = Field(alias="verifyingContract", pattern=_ADDRESS)


class MetricRefPublic(BaseModel):
    name: str
    unit: str = Field(description="SenML unit (RFC 8428)")
    scale: int = Field(description="value = integer * 10^-scale")


class SchemaRefPublic(BaseModel):
    id: str = Field(pattern=_HEX32, description="keccak256 of the name")
    name: str
    metrics: list[MetricRefPublic]


class AnchorPublic(BaseModel):
    """Where the batch root was anchored: the ReadingAnchor contract, its transaction and block."""

    model_config = ConfigDict(populate_by_name=True)

    chain_id: int = Field(alias="chainId", ge=0)
    contract: str = Field(pattern=_ADDRESS, description="The ReadingAnchor")
    tx_hash: str = Field(alias="txHash", pattern=_HEX32)
    block_number: int = Field(alias="blockNumber", ge=0)
    block_time: int = Field(alias="blockTime", ge=0, description="Unix seconds")


class ProofPublic(BaseModel):
    """A self-contained proof of one reading (format ``chainsense.proof.v1``)."""

    model_config = ConfigDict(populate_by_name=True)

    format: Literal["chainsense.proof.v1"] = "chainsense.proof.v1"
    reading: ProofReadingPublic
    domain: DomainPublic
    schema_: SchemaRefPublic | None = Field(default=None, alias="schema")
    struct_hash: str = Field(alias="structHash", pattern=_HEX32, description="hashStruct(reading)")
    leaf: str = Field(pattern=_HEX32, description="keccak256(keccak256(structHash))")
    proof: list[str] = Field(
        max_length=MAX_PROOF_STEPS, description="Sibling hashes from the leaf to the root"
    )
    root: str = Field(pattern=_HEX32)
    anchor: AnchorPublic
    reading_id: int | None = Field(default=None, alias="readingId")
    batch_id: int | None = Field(default=None, alias="batchId")


class CheckPublic(BaseModel):
    name: str = Field(examples=["signature"])
    ok: bool
    skipped: bool = Field(description="Not run, because a check it depends on failed")
    detail: str


class VerdictPublic(BaseModel):
    ok: bool = Field(description="Every check passed")
    onchain: bool = Field(description="Whether the anchor was checked against a chain")
    failed: list[str] = Field(description="Names of the checks that ran and failed")
    checks: list[CheckPublic]

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictPublic:
        return cls.model_validate(verdict.to_json())


class ProofPending(BaseModel):
    """The reading is stored but its batch is not anchored yet; ask again later."""

    status: Literal["pending"] = "pending"
    readingId: int
    state: str = Field(
        description="unbatched (waiting for a batch) or sealed (waiting for its anchor)"
    )
    batchId: int | None
    expectedWaitSeconds: float
    detail: str


class BatchPublic(BaseModel):
    id: int
    root: str
    reading_count: int
    state: str = Field(description="sealed or anchored")
    chain_id: int
    contract: str
    sealed_at: str
    tx_hash: str | None
    block_number: int | None
    block_time: int | None
    anchored_at: str | None
    attempts: int = Field(description="Failed anchoring attempts")
    last_error: str | None


class BatchPage(BaseModel):
    items: list[BatchPublic]
    next_cursor: str | None


class AnchoringStatus(BaseModel):
    """How far anchoring lags behind ingestion."""

    running: bool
    chain_ok: bool
    consecutive_failures: int
    last_error: str | None
    unbatched_readings: int = Field(description="Stored readings not yet in a batch")
    sealed_batches: int = Field(description="Batches waiting for their anchor")
    sealed_readings: int
    backlog_readings: int = Field(description="Readings stored but not yet anchored")
    lag_seconds: float = Field(description="Age of the oldest reading not yet anchored")
    batches_sealed: int = Field(description="Since this process started")
    batches_anchored: int = Field(description="Since this process started")
    reanchored: int = Field(description="Anchors moved or redone after a reorg")
    max_size: int
    max_age: float
    confirmations: int
