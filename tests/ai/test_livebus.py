"""Live events for every process (ai/livebus.py): with ``serve --workers`` the AI worker runs in
one process and a console's live stream may be held by another, which got nothing. Two buses on
one real PostgreSQL database stand for two workers: what one sends, both deliver, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from chainsense.ai.livebus import CHANNEL, PgLiveBus, decode, encode
from chainsense.store import Alarm, AlarmChange, NewAnomaly, Store, StoredAnomaly
from tests.store._support import address, reading, register
from tests.support import temp_postgres_database

pytestmark = pytest.mark.postgres


def test_payloads_stay_under_postgres_limit_and_round_trip() -> None:
    anomalies = list(range(10**9, 10**9 + 3000))
    alarms = [_stored_alarm(7), _stored_alarm(8, message="x" * 9000)]
    payloads = encode(anomalies, alarms)
    assert len(payloads) > 3
    assert all(len(p.encode()) < 8000 for p in payloads)
    decoded = [decode(p) for p in payloads]
    assert [i for tag, ids in decoded if tag == "a" and isinstance(ids, list) for i in ids] == (
        anomalies
    )
    assert decoded[-2:] == [("l", alarms[0]), ("i", [8])]  # too long to carry: read again
    assert encode([], []) == []
    for bad in ("x1,2", "a", "l[1]", "lnot json"):
        with pytest.raises(ValueError, match=r"payload|Expecting value"):
            decode(bad)


def _stored_alarm(alarm_id: int, message: str = "above 8 Cel") -> Alarm:
    return Alarm(
        id=alarm_id, device=address(1), schema=b"\x01" * 32, metrics=["temperature"],
        check="limit", state="active", acknowledged=False, severity="critical",
        first_seen_ms=1000, last_seen_ms=1000, count=1, max_score=3.2, last_value="12.5",
        expected_low="2", expected_high="8", reading_id=5, message=message,
        acknowledged_at_ms=None, cleared_at_ms=None,
    )  # fmt: skip


@pytest.fixture
def database() -> Iterator[str]:
    with temp_postgres_database("chainsense_test_livebus") as url:
        yield url


@pytest_asyncio.fixture
async def store(database: str) -> AsyncIterator[Store]:
    opened = await Store.open(database)
    try:
        yield opened
    finally:
        await opened.close()


def _anomaly(reading_id: int) -> NewAnomaly:
    return NewAnomaly(
        reading_id=reading_id, device=address(1), schema=b"\x01" * 32, metric="temperature",
        timestamp=1000 + reading_id, value=12.5, score=3.2, expected=4.1, low=3.9, high=4.3,
        check="limit", detector="joint_guard",
    )  # fmt: skip


def _alarm(reading_id: int) -> AlarmChange:
    return AlarmChange(
        alarm_id=None, device=address(1), schema=b"\x01" * 32, metrics=["temperature"],
        check="limit", severity="critical", first_seen_ms=1000, last_seen_ms=1000, count=1,
        max_score=3.2, last_value="12.5", expected_low="2", expected_high="8",
        reading_id=reading_id, message="above 8 Cel",
    )  # fmt: skip


async def test_what_one_worker_sends_every_worker_delivers_in_order(store: Store) -> None:
    await register(store, address(1))
    ids = [r.reading_id for r in await store.readings.insert_batch(
        [reading(address(1), s) for s in (1, 2, 3)]
    )]  # fmt: skip
    got: dict[str, list[StoredAnomaly | Alarm]] = {"leader": [], "follower": []}
    buses = {}
    for name in got:

        async def deliver(event: StoredAnomaly | Alarm, name: str = name) -> None:
            got[name].append(event)

        buses[name] = PgLiveBus(_dsn(store), store, deliver)
    tasks = [asyncio.create_task(bus.run()) for bus in buses.values()]
    try:
        await asyncio.wait_for(asyncio.gather(*(b.listening.wait() for b in buses.values())), 30)
        change = _alarm(ids[0])
        stored = await store.anomalies.checkpoint(
            worker="ai", cursor=ids[2], events=[_anomaly(i) for i in ids], states={},
            alarms=[change],
        )  # fmt: skip
        assert change.stored is not None
        await buses["leader"].send(stored, [change.stored])
        acked = await store.alarms.ack(change.stored.id, now_ms=2000)  # an operator, elsewhere
        assert acked is not None
        await buses["follower"].send([], [acked])
        for _ in range(500):
            if all(len(events) == 5 for events in got.values()):
                break
            await asyncio.sleep(0.01)
        for events in got.values():
            assert [type(e).__name__ for e in events] == ["StoredAnomaly"] * 3 + ["Alarm"] * 2
            assert [e.id for e in events[:3]] == [e.id for e in stored]
            assert [(e.acknowledged) for e in events[3:] if isinstance(e, Alarm)] == [False, True]
        assert got["leader"] == got["follower"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_listener_comes_back_after_its_connection_is_killed(store: Store) -> None:
    got: list[StoredAnomaly | Alarm] = []

    async def deliver(event: StoredAnomaly | Alarm) -> None:
        got.append(event)

    bus = PgLiveBus(_dsn(store), store, deliver, retry_s=0.1)
    task = asyncio.create_task(bus.run())
    try:
        await asyncio.wait_for(bus.listening.wait(), 30)
        async with store.engine.connect() as conn:  # the database ends the listener's session
            from sqlalchemy import text

            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE :q AND pid <> pg_backend_pid()"
                ),
                {"q": f"%LISTEN%{CHANNEL}%"},
            )
        for _ in range(300):
            if not bus.listening.is_set():
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(bus.listening.wait(), 30)
        await register(store, address(1))
        (row,) = await store.readings.insert_batch([reading(address(1), 1)])
        stored = await store.anomalies.checkpoint(
            worker="ai", cursor=row.reading_id or 0, events=[_anomaly(row.reading_id or 0)],
            states={},
        )  # fmt: skip
        await bus.send(stored, [])
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
        assert [e.id for e in got] == [stored[0].id]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _dsn(store: Store) -> str:
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
