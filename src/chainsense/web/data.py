"""What the console's pages show, gathered from the platform in-process (no HTTP round trip)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from chainsense.platform import Platform
from chainsense.store import BatchRecord, DeviceRecord, StoredReading
from chainsense.telemetry.schemas import UnknownSchemaError

__all__ = ["DeviceRow", "ReadingRow", "anchoring", "device_detail", "fleet"]

SILENT_AFTER_MS = 120_000
_RATE_WINDOW_MS = 60_000


@dataclass
class DeviceRow:
    record: DeviceRecord
    schema_name: str | None = None
    last_seen_ms: int | None = None
    rate_per_min: int = 0
    anomalies_1h: int = 0

    @property
    def live(self) -> bool:
        return self.last_seen_ms is not None and _now_ms() - self.last_seen_ms < SILENT_AFTER_MS

    @property
    def health(self) -> str:
        """``ok``, ``warn`` (anomalies in the last hour) or ``bad`` (silent or revoked)."""
        if self.record.status != "active" or not self.live:
            return "bad" if self.record.status == "active" and self.last_seen_ms else "idle"
        return "warn" if self.anomalies_1h else "ok"


@dataclass
class ReadingRow:
    reading: StoredReading
    values: list[tuple[str, str, str]] = field(default_factory=list)  # name, value, unit
    batch: BatchRecord | None = None

    @property
    def anchoring(self) -> str:
        if self.batch is None:
            return "waiting"
        return self.batch.state.value


def _now_ms() -> int:
    return int(time.time() * 1000)


def schema_name(platform: Platform, schema: bytes) -> str | None:
    try:
        return platform.schemas.by_id(schema).name
    except UnknownSchemaError:
        return None


async def _device_row(platform: Platform, record: DeviceRecord, now: int) -> DeviceRow:
    store = platform.store
    row = DeviceRow(record)
    latest = await store.readings.query(device=record.address, limit=1, newest_first=True)
    if latest:
        row.last_seen_ms = latest[0].timestamp
        row.schema_name = schema_name(platform, latest[0].schema)
        recent = await store.readings.query(
            device=record.address, since_ms=now - _RATE_WINDOW_MS, limit=10_000
        )
        row.rate_per_min = len(recent)
    events = await store.anomalies.query(
        device=record.address, since_ms=now - 3_600_000, limit=1000
    )
    row.anomalies_1h = len(events)
    return row


async def fleet(platform: Platform) -> list[DeviceRow]:
    """Every device with its last reading time, rate and recent anomalies."""
    now = _now_ms()
    records = await platform.store.devices.list(limit=1000)
    rows = await asyncio.gather(*(_device_row(platform, r, now) for r in records))
    return sorted(rows, key=lambda r: ({"bad": 0, "warn": 1, "ok": 2, "idle": 3}[r.health],
                                       (r.record.label or "~") + r.record.address))  # fmt: skip


def _format(raw: int, scale: int) -> str:
    return f"{raw / 10**scale:.{max(0, scale)}f}"


async def device_detail(platform: Platform, record: DeviceRecord) -> dict[str, Any]:
    """The device page: its row, metrics, latest readings with their batches, health and
    forecast when the AI worker has them."""
    now = _now_ms()
    row = await _device_row(platform, record, now)
    latest = await platform.store.readings.query(device=record.address, limit=15, newest_first=True)
    batches: dict[int, BatchRecord | None] = {}
    readings = []
    for reading in latest:
        item = ReadingRow(reading)
        try:
            schema = platform.schemas.by_id(reading.schema)
            item.values = [
                (m.name, _format(v, m.scale), m.unit)
                for m, v in zip(schema.metrics, reading.values, strict=False)
            ]
        except UnknownSchemaError:
            item.values = [(f"v{i}", str(v), "") for i, v in enumerate(reading.values)]
        if reading.batch_id is not None:
            if reading.batch_id not in batches:
                batches[reading.batch_id] = await platform.store.batches.get(reading.batch_id)
            item.batch = batches[reading.batch_id]
        readings.append(item)
    metrics: list[dict[str, Any]] = []
    if latest:
        try:
            schema = platform.schemas.by_id(latest[0].schema)
            metrics = [{"name": m.name, "unit": m.unit} for m in schema.metrics]
        except UnknownSchemaError:
            pass
    health: list[dict[str, Any]] = []
    forecast: dict[str, list[tuple[int, float]]] = {}
    if platform.ai is not None:
        for metric, life in sorted((await platform.ai.health(record.address, now)).items()):
            health.append({
                "metric": metric,
                "limit": platform.ai.config.limits.get(metric),
                "current": life.current if life else None,
                "hours": life.hours if life else None,
                "low": life.low_hours if life else None,
                "high": life.high_hours if life else None,
            })  # fmt: skip
        forecasted = await platform.ai.forecast(record.address, now, 8)
        forecast = {m: list(p) for m, p in forecasted.items()}
    return {
        "row": row,
        "readings": readings,
        "metrics": metrics,
        "health": health,
        "forecast": forecast,
        "forecast_interval_ms": platform.ai.config.forecast_interval_ms if platform.ai else None,
    }


async def anchoring(platform: Platform) -> dict[str, Any]:
    """Anchoring status, the newest batches and the chain's state."""
    state, backlog = await platform.anchorer.status()
    totals = await platform.store.batches.totals()
    if not state.running:  # another worker leads: its failures as it records them on batches
        running = platform.anchor_leader is not None and (
            await platform.anchor_leader.holder() is not None
        )
        state = replace(
            state,
            running=running,
            chain_ok=totals.last_error is None,
            consecutive_failures=totals.failed_attempts,
            last_error=totals.last_error,
        )
    lag = 0.0
    if backlog.oldest_unanchored_at is not None:
        lag = max(0.0, (datetime.now(UTC) - backlog.oldest_unanchored_at).total_seconds())
    batches = await platform.store.batches.find(limit=25, newest_first=True)
    chain = platform.chain
    try:
        head: int | None = await chain.client.block_number()
        rpc_error = None
    except Exception as exc:  # shown on the page, not raised
        head, rpc_error = None, str(exc)
    return {
        "state": state,
        "totals": totals,
        "backlog": backlog,
        "lag_s": lag,
        "policy": platform.anchorer.policy,
        "batches": batches,
        "chain_id": chain.deployment.chain_id,
        "rpc_url": chain.client.rpc_url,
        "head": head,
        "rpc_error": rpc_error,
        "contract": chain.deployment.address("ReadingAnchor"),
    }
