"""Reading models at the API edge: what a device sends (``ReadingIn``, ``ReadingSenMLIn``) and what
the API returns (``ReadingPublic``, ``ReadingAck``). The domain form is
:class:`chainsense.identity.Reading`; the ingest pipeline parses bodies itself (so one bad reading
in a batch does not fail the others), and these models document the same shapes in OpenAPI."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchAck",
    "BatchIn",
    "ReadingAck",
    "ReadingIn",
    "ReadingPage",
    "ReadingPublic",
    "ReadingSenMLIn",
    "SenMLRecord",
]

_ADDRESS = Field(
    pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x90F79bf6EB2c4f870365E785982E1f101E93b906"]
)
_SIGNATURE = Field(
    pattern=r"^0x[0-9a-fA-F]{130}$",
    description="EIP-712 signature, 65 bytes (r, s, v) with v = 27 or 28 and low s",
)
_UINT = int | str


class ReadingIn(BaseModel):
    """A signed reading in the raw typed form (the signed struct, as ARCHITECTURE.md defines)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "device": "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
                    "seq": 7,
                    "timestamp": 1763700000000,
                    "schema": "0x" + "ab" * 32,
                    "values": [415, 620],
                    "signature": "0x" + "11" * 65,
                }
            ]
        },
    )

    device: str = _ADDRESS
    seq: _UINT = Field(
        description="Per-device counter, strictly increasing: an integer from 1 to "
        "9223372036854775807 (2^63-1), as a JSON number or a decimal string (docs/input.md)"
    )
    timestamp: _UINT = Field(
        description="Device clock, ms since the Unix epoch: 0 to 2^63-1, at most "
        "CHAINSENSE_MAX_FUTURE_MS ahead of the server clock"
    )
    schema_: str = Field(
        alias="schema",
        pattern=r"^0x[0-9a-fA-F]{64}$",
        description="the schema id: a content hash of the schema definition (see GET /v1/schemas)",
    )
    values: list[_UINT] = Field(description="int64 fixed-point values in the schema's order")
    signature: str = _SIGNATURE


class SenMLRecord(BaseModel):
    """One named value (RFC 8428 names: n = name, u = unit, v = value); no other field."""

    model_config = ConfigDict(extra="forbid")

    n: str = Field(examples=["temperature"])
    u: str | None = Field(default=None, examples=["Cel"])
    v: float | int | str = Field(
        examples=[4.15], description="A decimal number with at most the metric's scale decimals"
    )


class ReadingSenMLIn(BaseModel):
    """A signed reading with SenML-style named values. The platform converts them to the schema's
    fixed-point integers; the device must have signed exactly those integers. A reading has
    ``senml`` or ``values``, never both."""

    model_config = ConfigDict(extra="forbid")

    device: str = _ADDRESS
    seq: _UINT
    timestamp: _UINT
    schema_: str = Field(alias="schema", examples=["chainsense.coldchain.v1"])
    senml: list[SenMLRecord]
    signature: str = _SIGNATURE


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    readings: list[ReadingIn | ReadingSenMLIn] = Field(min_length=1)


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem; ``field`` names the offending input field where there is one."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="`/problems/{code}`: GET it (relative to this server) for a page describing "
        "the problem; GET /problems lists every type",
        examples=["/problems/invalid-reading"],
    )
    title: str
    status: int
    detail: str | None = None
    field: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="Every invalid field, for request validation errors (422)"
    )


class ReadingAck(BaseModel):
    """The acknowledgement of one reading: sent only after the reading is durably stored."""

    index: int = 0
    status: Literal["stored", "duplicate", "rejected"]
    id: int | None = Field(default=None, description="Reading id (same id for a duplicate)")
    device: str | None = None
    seq: int | None = None
    error: Problem | None = None


class BatchAck(BaseModel):
    stored: int
    duplicates: int
    rejected: int
    results: list[ReadingAck]


class ReadingPublic(BaseModel):
    """A stored reading, with everything needed to re-verify its signature."""

    id: int
    device: str
    seq: int | str
    timestamp: int | str
    schema_: str = Field(alias="schema", serialization_alias="schema")
    schema_name: str | None
    values: list[int | str]
    signature: str
    struct_hash: str
    received_at: str
    batch_id: int | None

    model_config = ConfigDict(populate_by_name=True)


class ReadingPage(BaseModel):
    items: list[ReadingPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )
