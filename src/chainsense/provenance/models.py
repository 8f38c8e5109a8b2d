"""API models of the provenance resources (the OpenAPI face of proofs, batches and anchoring)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnchorOut",
    "AnchoringStatus",
    "BatchPage",
    "BatchPublic",
    "DomainOut",
    "MetricOut",
    "ProofOut",
    "ProofPending",
    "ProofReadingOut",
    "SchemaOut",
]


class ProofReadingOut(BaseModel):
    device: str
    seq: int | str
    timestamp: int | str
    schema_: str = Field(alias="schema", serialization_alias="schema")
    values: list[int | str]
    signature: str

    model_config = ConfigDict(populate_by_name=True)


class DomainOut(BaseModel):
    name: str
    version: str
    chainId: int
    verifyingContract: str = Field(description="The DeviceRegistry the device signed for")


class MetricOut(BaseModel):
    name: str
    unit: str
    scale: int


class SchemaOut(BaseModel):
    id: str
    name: str
    metrics: list[MetricOut]


class AnchorOut(BaseModel):
    chainId: int
    contract: str = Field(description="The ReadingAnchor contract")
    txHash: str
    blockNumber: int
    blockTime: int = Field(description="Block timestamp, seconds since the Unix epoch")


class ProofOut(BaseModel):
    """A self-contained proof document (format ``chainsense.proof.v1``): check it offline or
    against any RPC endpoint with ``chainsense verify`` or ``POST /v1/verify``."""

    format: str
    reading: ProofReadingOut
    domain: DomainOut
    schema_: SchemaOut | None = Field(alias="schema", serialization_alias="schema")
    structHash: str = Field(description="EIP-712 hashStruct(reading): the Merkle value")
    leaf: str = Field(description="keccak256(keccak256(structHash))")
    proof: list[str] = Field(description="Sibling hashes from the leaf to the root")
    root: str
    anchor: AnchorOut
    readingId: int | None = None
    batchId: int | None = None

    model_config = ConfigDict(populate_by_name=True)


class ProofPending(BaseModel):
    """The reading is stored but its batch is not anchored yet; ask again later."""

    status: str = Field(description='Always "pending"')
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
