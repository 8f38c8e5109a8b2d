"""All routers, gathered in one place."""

from fastapi import APIRouter

from chainsense.api.routes import (
    anomalies,
    batches,
    chain,
    device_ai,
    devices,
    exports,
    health,
    readings,
    schemas,
    verify,
)

__all__ = ["probes", "v1"]

probes = health.router

v1 = APIRouter(prefix="/v1")
v1.include_router(chain.router)
v1.include_router(devices.router)
v1.include_router(readings.router)
v1.include_router(schemas.router)
v1.include_router(batches.router)
v1.include_router(batches.status_router)
v1.include_router(exports.router)
v1.include_router(verify.router)
v1.include_router(anomalies.router)
v1.include_router(device_ai.router)
