"""Durable storage: devices (the registry mirror), signed readings, API keys.

SQLite (WAL, the embedded default) or PostgreSQL, through one async API::

    store = await Store.open(default_url(settings.data_dir))  # migrates to the latest schema
    results = await store.readings.insert_batch(rows)          # durable when it returns
    await store.close()

A reading is kept with every field it was signed over, so it can be verified again years later.
Each device's ``seq`` strictly increases in storage, even with several processes writing: see
:mod:`chainsense.store.readings`. Errors: :mod:`chainsense.store.errors`.
"""

from chainsense.store.alarms import Alarm, AlarmChange, AlarmRepository
from chainsense.store.anomalies import AnomalyRepository, NewAnomaly, StoredAnomaly
from chainsense.store.api_keys import ApiKeyRepository, hash_key
from chainsense.store.batches import (
    Backlog,
    BatchRecord,
    BatchRepository,
    BatchState,
    BatchTotals,
    PendingReading,
)
from chainsense.store.devices import DeviceRepository
from chainsense.store.engine import default_url, mask_url
from chainsense.store.errors import StoreError, StoreUnavailableError
from chainsense.store.market_agents import AgentOrder, Mandate, MarketAgentRepository
from chainsense.store.readings import MAX_QUERY_LIMIT, ReadingRepository, SeriesBucket
from chainsense.store.records import (
    ApiKeyRecord,
    DeviceRecord,
    DeviceStatus,
    InsertResult,
    NewReading,
    Outcome,
    Scope,
    StoredReading,
)
from chainsense.store.sessions import ConsoleSession, SessionRepository
from chainsense.store.store import Store

__all__ = [
    "MAX_QUERY_LIMIT",
    "AgentOrder",
    "Alarm",
    "AlarmChange",
    "AlarmRepository",
    "AnomalyRepository",
    "ApiKeyRecord",
    "ApiKeyRepository",
    "Backlog",
    "BatchRecord",
    "BatchRepository",
    "BatchState",
    "BatchTotals",
    "ConsoleSession",
    "DeviceRecord",
    "DeviceRepository",
    "DeviceStatus",
    "InsertResult",
    "Mandate",
    "MarketAgentRepository",
    "NewAnomaly",
    "NewReading",
    "Outcome",
    "PendingReading",
    "ReadingRepository",
    "Scope",
    "SeriesBucket",
    "SessionRepository",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "StoredAnomaly",
    "StoredReading",
    "default_url",
    "hash_key",
    "mask_url",
]
