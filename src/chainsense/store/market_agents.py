"""Forecast-driven market orders: participants' mandates and what the agent did per interval.

:meth:`MarketAgentRepository.record` keeps one row per participant and interval (the first one
wins), so an agent that restarts, or two that race, never act twice on the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from chainsense.store.engine import Database
from chainsense.store.records import checksum_address
from chainsense.store.schema import market_agent_orders, market_mandates

__all__ = ["AgentOrder", "Mandate", "MarketAgentRepository"]


@dataclass(frozen=True, slots=True)
class Mandate:
    """A participant's opt-in: prices in token units per Wh; ``sell_share`` in percent."""

    participant: str
    meter: str
    ask_price: int
    bid_price: int
    max_wh: int
    sell_share: int = 80
    enabled: bool = True
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AgentOrder:
    """What the agent did for one participant and interval (``side`` ``none``: no order, see
    ``note``)."""

    participant: str
    interval: int
    side: str
    quantity_wh: int
    price_per_wh: int
    order_id: int | None
    tx_hash: str | None
    expected_import_wh: float | None
    expected_export_wh: float | None
    note: str
    created_at: datetime | None = None


_MANDATE = [getattr(market_mandates.c, f.name) for f in fields(Mandate)]
_ORDER = [getattr(market_agent_orders.c, f.name) for f in fields(AgentOrder)]


class MarketAgentRepository:
    """Obtain it as ``store.market_agents``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)

    async def save_mandate(self, mandate: Mandate) -> Mandate:
        """Create or replace the participant's mandate (enabled, error cleared)."""
        now = datetime.now(UTC)
        row = {f.name: getattr(mandate, f.name) for f in fields(Mandate) if f.name != "created_at"}
        row |= {
            "participant": checksum_address(mandate.participant),
            "meter": checksum_address(mandate.meter),
            "enabled": True,
            "last_error": None,
            "updated_at": now,
        }
        stmt = self._insert(market_mandates).values(**row, created_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["participant"],
            set_={k: getattr(stmt.excluded, k) for k in row if k != "participant"},
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)
        saved = await self.mandate(row["participant"])
        assert saved is not None
        return saved

    async def mandate(self, participant: str) -> Mandate | None:
        stmt = select(*_MANDATE).where(
            market_mandates.c.participant == checksum_address(participant)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else Mandate(*tuple(row))

    async def mandates(self, *, enabled_only: bool = False) -> list[Mandate]:
        stmt = select(*_MANDATE).order_by(market_mandates.c.participant)
        if enabled_only:
            stmt = stmt.where(market_mandates.c.enabled.is_(True))
        async with self._db.read() as conn:
            return [Mandate(*tuple(row)) for row in await conn.execute(stmt)]

    async def set_enabled(self, participant: str, enabled: bool) -> bool:
        """Enable or disable a mandate; False if the participant has none."""
        return await self._update(participant, enabled=enabled, updated_at=datetime.now(UTC))

    async def set_error(self, participant: str, error: str | None) -> None:
        """Remember (or clear) why the agent could not act for the participant."""
        await self._update(participant, last_error=error)

    async def _update(self, participant: str, **values: Any) -> bool:
        stmt = (
            update(market_mandates)
            .where(market_mandates.c.participant == checksum_address(participant))
            .values(**values)
        )
        async with self._db.write() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def record(self, order: AgentOrder) -> AgentOrder:
        """Store what the agent did for the interval unless something is stored already; return
        the stored row (the earlier one if there was one)."""
        row = {f.name: getattr(order, f.name) for f in fields(AgentOrder)}
        row["participant"] = checksum_address(order.participant)
        row["created_at"] = datetime.now(UTC)
        stmt = (
            self._insert(market_agent_orders)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["participant", "interval"])
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)
        stored = await self.order(order.participant, order.interval)
        assert stored is not None
        return stored

    async def order(self, participant: str, interval: int) -> AgentOrder | None:
        stmt = select(*_ORDER).where(
            market_agent_orders.c.participant == checksum_address(participant),
            market_agent_orders.c.interval == interval,
        )
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else AgentOrder(*tuple(row))

    async def orders(self, participant: str, *, limit: int = 20) -> list[AgentOrder]:
        """The participant's latest intervals first."""
        stmt = (
            select(*_ORDER)
            .where(market_agent_orders.c.participant == checksum_address(participant))
            .order_by(market_agent_orders.c.interval.desc())
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [AgentOrder(*tuple(row)) for row in await conn.execute(stmt)]
