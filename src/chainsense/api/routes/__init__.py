"""All routers, gathered in one place."""

from fastapi import APIRouter

from chainsense.api.routes import (
    anomalies,
    chain,
    device_ai,
    devices,
    health,
    readings,
    schemas,
)

__all__ = ["probes", "v1"]

probes = health.router

v1 = APIRouter(prefix="/v1")
v1.include_router(chain.router)
v1.include_router(devices.router)
v1.include_router(readings.router)
v1.include_router(schemas.router)
v1.include_router(anomalies.router)
v1.include_router(device_ai.router)
