"""/v1/schemas: what each schema id means (names, SenML units, scales)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from chainsense.api.deps import PlatformDep
from chainsense.telemetry.schemas import Schema, UnknownSchemaError

router = APIRouter(prefix="/schemas", tags=["schemas"])


class MetricPublic(BaseModel):
    name: str = Field(examples=["temperature"])
    unit: str = Field(examples=["Cel"], description="SenML unit (RFC 8428)")
    scale: int = Field(examples=[2], description="value = integer * 10^-scale")
    description: str


class SchemaPublic(BaseModel):
    id: str = Field(
        description="keccak256(abi.encode(name, version, metrics)), metrics as (name, unit, "
        "scale) tuples: what a reading's `schema` field holds (docs/proof-format.md)"
    )
    name: str = Field(examples=["chainsense.coldchain.v1"])
    version: int = Field(examples=[1])
    description: str
    metrics: list[MetricPublic]


def _public(schema: Schema) -> SchemaPublic:
    return SchemaPublic(
        id=schema.id_hex,
        name=schema.name,
        version=schema.version,
        description=schema.description,
        metrics=[
            MetricPublic(name=m.name, unit=m.unit, scale=m.scale, description=m.description)
            for m in schema.metrics
        ],
    )


@router.get("", response_model=list[SchemaPublic], summary="All schemas")
async def list_schemas(platform: PlatformDep) -> list[SchemaPublic]:
    return [_public(s) for s in platform.schemas]


@router.get(
    "/{key}",
    response_model=SchemaPublic,
    summary="One schema, by name or 0x id",
    responses={404: {"description": "Unknown schema"}},
)
async def get_schema(key: str, platform: PlatformDep) -> SchemaPublic:
    try:
        return _public(platform.schemas.resolve(key))
    except UnknownSchemaError as exc:
        raise HTTPException(404, str(exc)) from None
