"""/v1/devices/{device}/series: one metric of a device over time, downsampled in the database.

A chart asks for at most ``points`` buckets over ``[since, until)``; each holds the count, min,
max and mean of the readings that fell in it, in the metric's unit. A year of minute readings
(half a million rows) comes back as a few hundred buckets: the rows never leave the database.
"""

from __future__ import annotations

import time
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from chainsense.api.deps import PlatformDep, ReaderDep
from chainsense.api.params import ADDRESS_PATTERN, SinceQuery, UntilQuery
from chainsense.telemetry.schemas import Schema, UnknownSchemaError

__all__ = ["router"]

router = APIRouter(prefix="/devices", tags=["devices"])

_DAY_MS = 86_400_000


class SeriesPoint(BaseModel):
    timestamp: int = Field(description="Start of the bucket, device time (ms)")
    count: int
    min: float
    max: float
    avg: float


class Series(BaseModel):
    device: str
    schema_: str = Field(alias="schema", description="Schema id (0x-hex)")
    schema_name: str
    metric: str
    unit: str
    metrics: list[str] = Field(description="Every metric of the schema, in order")
    since: int
    until: int
    bucket_ms: int = Field(description="Width of each bucket (ms)")
    points: list[SeriesPoint] = Field(description="Non-empty buckets, oldest first")


@router.get(
    "/{device}/series",
    response_model=Series,
    response_model_by_alias=True,
    summary="One metric over time, downsampled into min/max/avg buckets",
    responses={404: {"description": "Unknown device, schema or metric; or no readings"}},
)
async def get_series(
    device: Annotated[str, Path(pattern=ADDRESS_PATTERN, description="Device key address")],
    platform: PlatformDep,
    _key: ReaderDep,
    metric: Annotated[
        str | None, Query(max_length=64, description="Metric name (default: the first)")
    ] = None,
    schema: Annotated[
        str | None,
        Query(max_length=100, description="Schema name or 0x-hex id (default: the latest's)"),
    ] = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    points: Annotated[int, Query(ge=1, le=2000, description="Most buckets to return")] = 300,
) -> Series:
    address = to_checksum_address(device)
    found = _schema(platform, schema) if schema else await _latest_schema(platform, address)
    names = [m.name for m in found.metrics]
    name = metric or names[0]
    if name not in names:
        raise HTTPException(404, f"schema {found.name} has no metric {name!r}; it has {names}")
    index = names.index(name)
    until_ms = until if until is not None else int(time.time() * 1000) + 1
    since_ms = since if since is not None else max(0, until_ms - _DAY_MS)
    if since_ms >= until_ms:
        raise HTTPException(422, "since must be before until")
    buckets = await platform.store.readings.series(
        device=address,
        schema=found.id,
        index=index,
        since_ms=since_ms,
        until_ms=until_ms,
        buckets=points,
    )
    scale = 10.0 ** found.metrics[index].scale
    width = max(1, -(-(until_ms - since_ms) // points))
    return Series(
        device=address,
        schema="0x" + found.id.hex(),
        schema_name=found.name,
        metric=name,
        unit=found.metrics[index].unit,
        metrics=names,
        since=since_ms,
        until=until_ms,
        bucket_ms=width,
        points=[
            SeriesPoint(
                timestamp=b.start_ms,
                count=b.count,
                min=b.min / scale,
                max=b.max / scale,
                avg=b.mean / scale,
            )
            for b in buckets
        ],
    )


def _schema(platform: PlatformDep, ref: str) -> Schema:
    try:
        if ref.startswith("0x") and len(ref) == 66:
            return platform.schemas.by_id(bytes.fromhex(ref[2:]))
        return platform.schemas.by_name(ref)
    except (UnknownSchemaError, ValueError):
        raise HTTPException(404, f"unknown schema {ref!r}") from None


async def _latest_schema(platform: PlatformDep, address: str) -> Schema:
    latest = await platform.store.readings.query(device=address, limit=1, newest_first=True)
    if not latest:
        if await platform.store.devices.get(address) is None:
            raise HTTPException(404, f"device {address} is not registered")
        raise HTTPException(404, f"device {address} has no readings yet")
    try:
        return platform.schemas.by_id(latest[0].schema)
    except UnknownSchemaError:
        raise HTTPException(404, f"the latest reading of {address} has an unknown schema") from None
