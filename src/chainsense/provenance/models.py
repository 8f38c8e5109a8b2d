"""Proof documents, verdicts, batches and the anchoring status at the API edge (pydantic, for
OpenAPI).

``ProofPublic`` documents the ``chainsense.proof.v2`` shape (:mod:`chainsense.provenance.proof`):
``POST /v1/verify`` takes it, and a route that hands proofs out can return it. The domain forms
are :class:`~chainsense.provenance.proof.ProofDocument` (parsed strictly, naming the bad field)
and :class:`~chainsense.provenance.verify.Verdict`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chainsense.provenance.proof import MAX_PROOF_STEPS, MAX_TRIE_NODES
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
_HEX = r"^0x([0-9a-fA-F]{2})*$"
_UINT = r"^(0|[1-9][0-9]*)$"
_INT = r"^(0|-?[1-9][0-9]*)$"
_STRICT = ConfigDict(extra="forbid")


class ProofReadingPublic(BaseModel):
    """The signed reading, with its signature. Integers are decimal strings."""

    model_config = _STRICT

    device: str = Field(pattern=_ADDRESS)
    seq: str = Field(pattern=_UINT, description="uint64")
    timestamp_ms: str = Field(pattern=_UINT, description="Device clock, ms since the Unix epoch")
    schema_: str = Field(alias="schema", pattern=_HEX32, description="The schema id")
    values: list[str] = Field(description="int64 fixed-point values in the schema's order")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65 bytes r, s, v")


class DomainPublic(BaseModel):
    """The EIP-712 domain the device signed in; ``verifying_contract`` is the DeviceRegistry."""

    model_config = _STRICT

    name: str
    version: str
    chain_id: str = Field(pattern=_UINT)
    verifying_contract: str = Field(pattern=_ADDRESS)


class MetricRefPublic(BaseModel):
    model_config = _STRICT

    name: str
    unit: str = Field(description="SenML unit (RFC 8428)")
    scale: str = Field(pattern=_INT, description="int8: value = integer * 10^-scale")


class SchemaRefPublic(BaseModel):
    model_config = _STRICT

    id: str = Field(pattern=_HEX32, description="keccak256(abi.encode(name, version, metrics))")
    name: str
    version: str = Field(pattern=_UINT, description="uint32")
    metrics: list[MetricRefPublic]


class AnchorPublic(BaseModel):
    """Where the batch root was anchored, and the block evidence tying it to a block hash."""

    model_config = _STRICT

    chain_id: str = Field(pattern=_UINT)
    contract: str = Field(pattern=_ADDRESS, description="The ReadingAnchor")
    tx_hash: str = Field(pattern=_HEX32)
    tx_index: str = Field(pattern=_UINT, description="Index of the transaction in its block")
    block_number: str = Field(pattern=_UINT)
    block_hash: str = Field(pattern=_HEX32)
    block_time_s: str = Field(pattern=_UINT, description="Unix seconds")
    header_rlp: str = Field(pattern=_HEX, description="The block header, RLP")
    receipt_proof: list[str] = Field(
        max_length=MAX_TRIE_NODES, description="Receipts-trie nodes (RLP), root first"
    )


class ProofPublic(BaseModel):
    """A self-contained proof of one reading (format ``chainsense.proof.v2``,
    docs/proof-format.md)."""

    model_config = _STRICT

    format: Literal["chainsense.proof.v2"]
    reading: ProofReadingPublic
    domain: DomainPublic
    schema_: SchemaRefPublic = Field(alias="schema")
    struct_hash: str = Field(pattern=_HEX32, description="hashStruct(reading)")
    leaf: str = Field(pattern=_HEX32, description="keccak256(keccak256(struct_hash))")
    merkle_proof: list[str] = Field(
        max_length=MAX_PROOF_STEPS, description="Sibling hashes from the leaf to the root"
    )
    root: str = Field(pattern=_HEX32)
    anchor: AnchorPublic
    reading_id: str | None = Field(pattern=_UINT)
    batch_id: str | None = Field(pattern=_UINT)


class CheckPublic(BaseModel):
    name: str = Field(examples=["signature"])
    ok: bool
    skipped: bool = Field(description="Not run: a check it needs failed, or no input for it")
    detail: str


class VerdictPublic(BaseModel):
    ok: bool = Field(description="Valid: every check ran and passed")
    status: Literal["valid", "invalid", "incomplete"]
    onchain: bool = Field(description="Whether an RPC endpoint was asked")
    failed: list[str] = Field(description="Names of the checks that ran and failed")
    unchecked: list[str] = Field(description="Names of the checks that did not run")
    checks: list[CheckPublic]

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictPublic:
        return cls.model_validate(verdict.to_json())


class ProofPending(BaseModel):
    """The reading is stored but its batch is not anchored yet; ask again later."""

    status: Literal["pending"] = "pending"
    reading_id: int
    state: str = Field(
        description="unbatched (waiting for a batch) or sealed (waiting for its anchor)"
    )
    batch_id: int | None
    expected_wait_seconds: float
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

    running: bool = Field(
        description="The anchorer runs: in this process, or (several workers or hosts) in the "
        "process that holds its leadership"
    )
    anchorer_here: bool = Field(
        description="The anchorer runs in the process that answered. When false (``serve "
        "--workers``: another worker leads), chain_ok, consecutive_failures and last_error come "
        "from the database (the oldest waiting batch's failed attempts and error), and "
        "sealing_ok, blocked and reanchored are this process's own (it does not anchor): the "
        "leader's are in /metrics"
    )
    chain_ok: bool = Field(description="False while sealing or anchoring fails")
    consecutive_failures: int = Field(description="Failed anchoring attempts in a row")
    last_error: str | None = Field(description="Cleared once sealing and anchoring work again")
    sealing_ok: bool = Field(description="False while sealing batches fails (the store)")
    blocked: str | None = Field(
        description="A failure retrying cannot fix (an anchorer account without funds) and "
        "what fixes it; nothing is sent meanwhile"
    )
    unbatched_readings: int = Field(description="Stored readings not yet in a batch")
    sealed_batches: int = Field(description="Batches waiting for their anchor")
    sealed_readings: int
    backlog_readings: int = Field(description="Readings stored but not yet anchored")
    lag_seconds: float = Field(description="Age of the oldest reading not yet anchored")
    batches_sealed: int = Field(description="Batches in the database (all ever sealed)")
    batches_anchored: int = Field(description="Batches in the database that are anchored")
    reanchored: int = Field(
        description="Anchors moved or redone after a reorg, since the anchorer's process started"
    )
    max_size: int
    max_age: float
    confirmations: int
