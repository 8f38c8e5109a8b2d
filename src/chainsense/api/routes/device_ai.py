"""/v1/devices/{address}/health (remaining useful life of a machine),
/v1/devices/{address}/forecast (a meter's next intervals) and
/v1/devices/{address}/sensitivity (the device's expected false alarms a week) and
/v1/devices/{address}/recommission (after service: the AI layer learns the device afresh)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.inputs import InputModel
from chainsense.api.routes.anomalies import _service

router = APIRouter(prefix="/devices", tags=["devices"])

AddressPath = Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{40}$", description="Device address")]


class MetricHealth(BaseModel):
    metric: str
    current: float | None = Field(description="The trend's value now")
    limit: float
    slope_per_hour: float | None
    remaining_hours: float | None = Field(
        description="Hours until the trend reaches the limit; null: not rising towards it"
    )
    remaining_hours_low: float | None = Field(description="Early end of the band (slope + 2 SE)")
    remaining_hours_high: float | None = Field(
        description="Late end of the band (slope - 2 SE); null: possibly never"
    )
    points: int


class DeviceHealth(BaseModel):
    device: str
    at: int = Field(description="Time of the estimate (ms)")
    metrics: list[MetricHealth]


class ForecastPoint(BaseModel):
    timestamp: int
    value: float


class DeviceForecast(BaseModel):
    device: str
    interval_ms: int
    metrics: dict[str, list[ForecastPoint]]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No readings of that kind from this device analysed yet"},
    503: {"description": "The AI worker is disabled"},
}


@router.get(
    "/{address}/health",
    response_model=DeviceHealth,
    summary="Remaining useful life",
    responses=_RESPONSES,
)
async def device_health(
    address: AddressPath, platform: PlatformDep, _key: ReaderDep
) -> dict[str, Any]:
    service = _service(platform)
    device = to_checksum_address(address)
    now = int(time.time() * 1000)
    estimates = await service.health(device, now)
    if not estimates:
        raise HTTPException(404, f"no machine readings of {device} analysed yet")
    metrics = []
    for metric, life in sorted(estimates.items()):
        limit = service.config.limits[metric]
        metrics.append(
            {
                "metric": metric,
                "limit": limit,
                "current": life.current if life else None,
                "slope_per_hour": life.slope_per_hour if life else None,
                "remaining_hours": life.hours if life else None,
                "remaining_hours_low": life.low_hours if life else None,
                "remaining_hours_high": life.high_hours if life else None,
                "points": life.points if life else 0,
            }
        )
    return {"device": device, "at": now, "metrics": metrics}


@router.get(
    "/{address}/forecast",
    response_model=DeviceForecast,
    summary="Demand forecast",
    responses=_RESPONSES,
)
async def device_forecast(
    address: AddressPath,
    platform: PlatformDep,
    _key: ReaderDep,
    intervals: Annotated[int, Query(ge=1, le=7 * 96)] = 96,
    start: Annotated[
        int | None, Query(ge=0, lt=2**63, description="From (ms); default now")
    ] = None,
) -> dict[str, Any]:
    service = _service(platform)
    device = to_checksum_address(address)
    begin = start if start is not None else int(time.time() * 1000)
    forecasts = await service.forecast(device, begin, intervals)
    if not forecasts:
        raise HTTPException(404, f"no meter readings of {device} analysed yet")
    return {
        "device": device,
        "interval_ms": service.config.forecast_interval_ms,
        "metrics": {
            m: [{"timestamp": t, "value": v} for t, v in points] for m, points in forecasts.items()
        },
    }


class SensitivityIn(InputModel):
    false_alarms_per_week: float | None = Field(
        gt=0,
        le=1e6,
        description="About this many false alarms a week per stream of this device; null: "
        "back to the settings' rate",
        examples=[0.1],
    )


class SensitivityPublic(BaseModel):
    device: str
    false_alarms_per_week: float | None = Field(
        description="The device's own rate; null: the settings' apply"
    )
    default_false_alarms_per_week: float = Field(
        description="CHAINSENSE_AI_FALSE_ALARMS_PER_WEEK (a schema's or device's entry in "
        "CHAINSENSE_AI_FALSE_ALARMS wins over it when the device has no rate of its own)"
    )


async def _sensitivity(platform: PlatformDep, device: str) -> dict[str, Any]:
    own, default = await _service(platform).sensitivity(device)
    return {
        "device": device,
        "false_alarms_per_week": own,
        "default_false_alarms_per_week": default,
    }


@router.get(
    "/{address}/sensitivity",
    response_model=SensitivityPublic,
    summary="The device's sensitivity",
    responses={503: _RESPONSES[503]},
)
async def device_sensitivity(
    address: AddressPath, platform: PlatformDep, _key: ReaderDep
) -> dict[str, Any]:
    return await _sensitivity(platform, to_checksum_address(address))


@router.put(
    "/{address}/sensitivity",
    response_model=SensitivityPublic,
    summary="Set the device's sensitivity",
    description="Sensitivity as an expected false-alarm rate: the alarm point of every stream "
    "of this device becomes the tail probability rate * sampling interval / week, from its "
    "next reading. Saved: it survives a restart.",
    responses={503: _RESPONSES[503]},
)
async def set_device_sensitivity(
    address: AddressPath, body: SensitivityIn, platform: PlatformDep, _key: OperatorDep
) -> dict[str, Any]:
    device = to_checksum_address(address)
    await _service(platform).set_sensitivity(device, body.false_alarms_per_week)
    return await _sensitivity(platform, device)


class Recommissioned(BaseModel):
    device: str
    recommissioned_at: int = Field(description="When (ms)")
    alarms_cleared: list[int] = Field(description="The device's open alarms, now cleared")


@router.post(
    "/{address}/recommission",
    responses={503: _RESPONSES[503]},
    response_model=Recommissioned,
    summary="Re-commission a device after service",
    description="The device was serviced, repaired or replaced: what the AI layer learnt of it "
    "(its detectors, a machine's commissioning baseline and degradation trends) is forgotten, "
    "so its next readings start a learning period (a machine's next 400 readings are its new "
    "commissioning baseline), and its open alarms are cleared. A meter's demand profile is "
    "kept. Saved at once; the running AI worker drops its copies before its next chunk.",
)
async def recommission_device(
    address: AddressPath, platform: PlatformDep, _key: OperatorDep
) -> dict[str, Any]:
    device = to_checksum_address(address)
    now = int(time.time() * 1000)
    cleared = await _service(platform).recommission(device, now_ms=now)
    return {
        "device": device,
        "recommissioned_at": now,
        "alarms_cleared": [a.id for a in cleared],
    }
