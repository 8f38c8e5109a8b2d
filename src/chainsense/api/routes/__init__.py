"""All routers, gathered in one place."""

from fastapi import APIRouter

from chainsense.api.routes import (
    alarms,
    anomalies,
    api_keys,
    batches,
    chain,
    charging,
    deployment,
    device_ai,
    devices,
    exports,
    health,
    market,
    market_agents,
    readings,
    schemas,
    series,
    session,
    settlement,
    shipments,
    verify,
)

__all__ = ["probes", "v1"]

probes = health.router

v1 = APIRouter(prefix="/v1")
v1.include_router(chain.router)
v1.include_router(devices.router)
v1.include_router(series.router)
v1.include_router(readings.router)
v1.include_router(schemas.router)
v1.include_router(batches.router)
v1.include_router(batches.status_router)
v1.include_router(exports.router)
v1.include_router(verify.router)
v1.include_router(deployment.router)
v1.include_router(anomalies.router)
v1.include_router(alarms.router)
v1.include_router(device_ai.router)
v1.include_router(shipments.router)
v1.include_router(market.router)
v1.include_router(market_agents.router)
v1.include_router(charging.router)
v1.include_router(settlement.router)
v1.include_router(session.router)
v1.include_router(api_keys.router)
