"""The AI layer's repository on both backends: events stored once, states and cursor together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chainsense.store import NewAnomaly, Store

from ._support import address, reading, register


def _event(reading_id: int, metric: str = "temperature", timestamp: int = 1000) -> NewAnomaly:
    return NewAnomaly(
        reading_id=reading_id,
        device=address(1),
        schema=b"\x01" * 32,
        metric=metric,
        timestamp=timestamp,
        value=12.5,
        score=3.2,
        expected=4.1,
        low=3.9,
        high=4.3,
        check="level",
        detector="sensor_guard",
    )


async def test_checkpoint_stores_events_once_with_states_and_cursor(store: Store) -> None:
    await register(store, address(1))
    results = await store.readings.insert_batch([reading(address(1), s) for s in (1, 2, 3)])
    ids = [r.reading_id for r in results]
    assert all(isinstance(i, int) for i in ids)
    first = await store.anomalies.checkpoint(
        worker="ai",
        cursor=ids[1],
        events=[_event(ids[0]), _event(ids[1], "humidity", 2000)],
        states={(address(1), "temperature", "detector"): {"kind": "x", "n": 1}},
    )
    assert [e.reading_id for e in first] == ids[:2]
    # a replay after a restart: the same event again is skipped, the new one stored
    again = await store.anomalies.checkpoint(
        worker="ai",
        cursor=ids[2],
        events=[_event(ids[1], "humidity", 2000), _event(ids[2], timestamp=3000)],
        states={(address(1), "temperature", "detector"): {"kind": "x", "n": 2}},
    )
    assert [e.reading_id for e in again] == [ids[2]]
    assert await store.anomalies.cursor("ai") == ids[2]
    assert await store.anomalies.cursor("other") == 0
    assert await store.anomalies.states() == {
        (address(1), "temperature", "detector"): {"kind": "x", "n": 2}
    }
    everything = await store.anomalies.query()
    assert len(everything) == 3
    page = await store.anomalies.query(after_id=everything[0].id, limit=1)
    assert [e.id for e in page] == [everything[1].id]
    assert [e.metric for e in await store.anomalies.query(since_ms=2000, until_ms=3000)] == [
        "humidity"
    ]
    assert await store.anomalies.query(device=address(2)) == []
    assert await store.anomalies.query(schema=b"\x02" * 32) == []
    got = await store.anomalies.get(everything[2].id)
    assert got is not None
    assert (got.value, got.low) == (12.5, 3.9)
    assert await store.anomalies.newest_reading_id() == ids[2]


async def test_changed_states_are_the_kinds_asked_written_since(store: Store) -> None:
    """What the AI worker reads to take up settings other processes saved (serve --workers)."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    await store.anomalies.put_state((address(1), "*", "sensitivity"), {"false_alarms_per_week": 2})
    await store.anomalies.put_state((address(2), "shipment:7", "shipment"), {"shipment": 7})
    await store.anomalies.put_state((address(3), "temperature", "detector"), {"n": 1})
    changed = await store.anomalies.changed_states(("sensitivity", "shipment"), before)
    assert [(key, state) for key, state, _ in changed] == [
        ((address(1), "*", "sensitivity"), {"false_alarms_per_week": 2}),
        ((address(2), "shipment:7", "shipment"), {"shipment": 7}),
    ]
    newest = max(at if at.tzinfo else at.replace(tzinfo=UTC) for _, _, at in changed)
    assert before < newest <= datetime.now(UTC)
    later = newest + timedelta(seconds=1)
    assert await store.anomalies.changed_states(("sensitivity", "shipment"), later) == []
