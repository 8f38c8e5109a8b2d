"""Market agent storage on both backends: mandates replaced in place, one record per
participant and interval (the first wins), errors remembered and cleared."""

from __future__ import annotations

from chainsense.store import AgentOrder, Mandate, Store

from ._support import address


def _mandate(n: int, **changes: int) -> Mandate:
    fields: dict[str, int] = {"ask_price": 120, "bid_price": 180, "max_wh": 5_000} | changes
    return Mandate(participant=address(n), meter=address(n + 100), **fields)


def _order(n: int, interval: int, side: str = "bid", order_id: int | None = 7) -> AgentOrder:
    return AgentOrder(
        participant=address(n), interval=interval, side=side, quantity_wh=900,
        price_per_wh=180, order_id=order_id, tx_hash="0x" + "ab" * 32,
        expected_import_wh=1_000.5, expected_export_wh=100.25, note="forecast import",
    )  # fmt: skip


async def test_mandates_are_saved_replaced_and_disabled(store: Store) -> None:
    saved = await store.market_agents.save_mandate(_mandate(1))
    assert (saved.participant, saved.meter, saved.enabled, saved.sell_share) == (
        address(1), address(101), True, 80,
    )  # fmt: skip
    assert saved.created_at is not None
    assert saved.created_at.tzinfo is not None
    await store.market_agents.set_error(address(1), "not allowed on-chain")
    errored = await store.market_agents.mandate(address(1))
    assert errored is not None
    assert errored.last_error == "not allowed on-chain"
    # saving again replaces the terms, re-enables and clears the error, keeps created_at
    assert await store.market_agents.set_enabled(address(1), False)
    again = await store.market_agents.save_mandate(_mandate(1, bid_price=200))
    assert (again.bid_price, again.enabled, again.last_error) == (200, True, None)
    assert again.created_at == saved.created_at
    await store.market_agents.save_mandate(_mandate(2))
    await store.market_agents.set_enabled(address(2), False)
    assert [m.participant for m in await store.market_agents.mandates()] == [address(1), address(2)]
    assert [m.participant for m in await store.market_agents.mandates(enabled_only=True)] == [
        address(1)
    ]
    assert not await store.market_agents.set_enabled(address(3), True)
    assert await store.market_agents.mandate(address(3)) is None


async def test_one_record_per_participant_and_interval(store: Store) -> None:
    first = await store.market_agents.record(_order(1, 10))
    assert first.created_at is not None
    assert first.order_id == 7
    # a second record for the same interval keeps the first
    second = await store.market_agents.record(_order(1, 10, side="none", order_id=None))
    assert (second.side, second.order_id, second.created_at) == ("bid", 7, first.created_at)
    await store.market_agents.record(_order(1, 11, side="none", order_id=None))
    await store.market_agents.record(_order(2, 11))
    assert [o.interval for o in await store.market_agents.orders(address(1))] == [11, 10]
    assert (await store.market_agents.order(address(1), 10)) == first
    assert await store.market_agents.order(address(1), 12) is None
    assert first.expected_import_wh == 1_000.5
