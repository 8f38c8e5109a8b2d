"""The AI worker's models in a process of their own give what they give in a thread: the same
events, alarms and model states, reading for reading; a child killed mid-stream is started again
from the last checkpoint and loses nothing, counts nothing twice, and leaves no process behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from chainsense.ai.monitor import ShipmentLimit
from chainsense.ai.service import AIConfig, AIService
from chainsense.ai.synthetic import START_MS, make_meter, make_stream
from chainsense.store import NewReading, Store
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.store._support import address, register

COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
MACHINE = BUILTIN_SCHEMAS.by_name("chainsense.machine.v1")
METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1")
DAYS = 4


def _readings() -> list[NewReading]:
    """Cold-chain loggers (a hard-limit breach, a watched shipment's range),
    machines (a drift; their health trends) and meters (their forecast profiles), interleaved
    in time as a fleet sends them."""
    rows: list[tuple[int, int, NewReading]] = []

    def add(n: int, schema: bytes, times: list[int], values: Sequence[tuple[int, ...]]) -> None:
        device = address(n)
        for seq, (t, v) in enumerate(zip(times, values, strict=True), start=1):
            tag = f"{device}/{seq}".encode()
            reading = NewReading(
                device=device, seq=seq, timestamp=t, schema=schema, values=v,
                signature=hashlib.sha512(tag).digest() + b"\x1b",
                struct_hash=hashlib.sha256(tag).digest(),
            )  # fmt: skip
            rows.append((t, n, reading))

    for n, kind in enumerate(("spike", "level_shift", "noise", "stuck"), start=1):
        temp = make_stream("temperature", kind, seed=n, days=DAYS, clean_days=1)
        hum = make_stream("humidity", "spike", seed=n, days=DAYS, clean_days=1)
        values = [
            (round(a * 100), round(b * 10)) for a, b in zip(temp.values, hum.values, strict=False)
        ]
        if n == 3:  # out of 2..8 Cel for a while: a critical alarm, updated, then cleared
            values[700:850] = [(1250 + i % 30, 600) for i in range(150)]
        add(n, COLD.id, temp.times, values)
    for n in (5, 6):
        vib = make_stream("vibration", "drift", seed=n, days=DAYS, clean_days=1)
        machine = [(round(v * 1000), 6000 + i % 7, 12000 + i % 5) for i, v in enumerate(vib.values)]
        add(n, MACHINE.id, vib.times, machine)
    for n in (7, 8):
        times, wh = make_meter(seed=n, days=DAYS)
        add(n, METER.id, times, [(round(v), 0) for v in wh])
    return [r for _, _, r in sorted(rows, key=lambda x: (x[0], x[1]))]


READINGS = _readings()
SHIPMENT = ShipmentLimit(
    shipment=7, schema=COLD.id, value_index=0, min_value=450, max_value=500,
    window_start_ms=START_MS + 86_400_000, window_end_ms=START_MS + 86_400_000 + 3 * 3_600_000,
)  # fmt: skip


async def _fill(store: Store, *, start: int = 0, stop: int | None = None) -> int:
    stop = len(READINGS) if stop is None else stop
    for i in range(start, stop, 1000):
        await store.readings.insert_batch(READINGS[i : min(i + 1000, stop)])
    return await store.anomalies.newest_reading_id()


RECOMMISSIONED_MS = START_MS + 123


async def _recommission(leader: AIService, follower: AIService | None) -> None:
    """The logger of the long excursion is re-commissioned in the middle of it: directly, or
    through a process that does not run the worker (which must take it up by itself)."""
    device = address(3)
    cleared = await (follower or leader).recommission(device, now_ms=RECOMMISSIONED_MS)
    assert [a.state for a in cleared] == ["cleared"]
    for _ in range(1000):
        if leader._recommissioned.get(device) == RECOMMISSIONED_MS:
            return
        leader.notify(0)  # wake it: it applies the request before its next chunk
        await asyncio.sleep(0.01)
    raise AssertionError("the worker did not take up the re-commissioning")


async def _settings(service: AIService) -> None:
    """Settings made through the API before the stream: saved, then applied (sent to a
    running child)."""
    await service.set_sensitivity(address(2), 0.1)
    await service.watch_shipment([address(4)], SHIPMENT)


async def _settings_through_a_follower(store: Store, leader: AIService) -> AIService:
    """``serve --workers``: the API request reaches a worker that does not run the AI worker;
    it saves the settings, and the leader's worker must take them up by itself."""
    follower = AIService(store=store, schemas=BUILTIN_SCHEMAS, config=AIConfig())
    follower.follow_settings = True
    await _settings(follower)
    for _ in range(1000):
        if leader.monitor.device_per_week.get(address(2).lower()) == 0.1 and (
            address(4).lower() in leader.monitor.shipments
        ):
            return follower
        await asyncio.sleep(0.01)
    raise AssertionError("the worker did not take up the settings another process saved")


async def _same_models_from_a_follower(leader: AIService, follower: AIService) -> None:
    """A machine's health and a meter's forecast asked of a worker that does not run the AI
    worker (they were empty there: 404) are the worker's, as it saved them."""
    now = START_MS + DAYS * 86_400_000
    machine, meter = address(5), address(7)
    health = await leader.health(machine, now)
    assert health
    assert await follower.health(machine, now) == health
    forecast = await leader.forecast(meter, now, 8)
    assert forecast
    assert await follower.forecast(meter, now, 8) == forecast


async def _drain(service: AIService, newest: int, on_progress: Any = None) -> None:
    service.notify(newest)
    for _ in range(6000):
        status = service.status()
        assert status["running"], status
        if on_progress is not None:
            await on_progress(status)
        if status["cursor"] == newest:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the AI worker did not catch up: {service.status()}")


async def _outcome(store: Store) -> dict[str, Any]:
    events = []
    after = None
    while page := await store.anomalies.query(after_id=after, limit=1000):
        events += [asdict(e) | {"created_at": None} for e in page]
        after = page[-1].id
    alarms = [asdict(a) for a in await store.alarms.query(limit=10_000)]
    return {"events": events, "alarms": alarms, "states": await store.anomalies.states()}


async def _run(
    path: Path,
    *,
    process: bool,
    chunk: int,
    kill_at: int | None = None,
    kill_on: str = "processed",
    settings_after_start: bool = False,
    settings_from_another_process: bool = False,
    recommission_at: int | None = None,
) -> Any:
    store = await Store.open(f"sqlite+aiosqlite:///{path / 'chainsense.db'}")
    await register(store, *(address(n) for n in range(1, 9)))
    try:
        service = AIService(
            store=store, schemas=BUILTIN_SCHEMAS, config=AIConfig(chunk=chunk, process=process)
        )
        service.follow_settings = settings_from_another_process
        if not (settings_after_start or settings_from_another_process):
            await _settings(service)
        await service.start()
        pids: list[int] = []
        try:
            if settings_after_start:
                await _settings(service)
            if settings_from_another_process:
                follower = await _settings_through_a_follower(store, service)
            if recommission_at is not None:
                await _drain(service, await _fill(store, stop=recommission_at))
                await _recommission(service, follower if settings_from_another_process else None)
            newest = await _fill(store, start=recommission_at or 0)
            if process:
                pids.append(service.status()["engine_pid"])

            async def kill(status: dict[str, Any]) -> None:
                if kill_at is not None and not pids[1:] and status[kill_on] >= kill_at:
                    os.kill(pids[0], signal.SIGKILL)
                    pids.append(-1)

            await _drain(service, newest, kill)
            status = service.status()
            if settings_from_another_process:
                await _same_models_from_a_follower(service, follower)
        finally:
            await service.stop()
        return await _outcome(store), status, pids
    finally:
        await store.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
async def test_a_process_gives_the_same_events_alarms_and_states_as_a_thread(
    tmp_path: Path,
) -> None:
    (tmp_path / "thread").mkdir()
    (tmp_path / "process").mkdir()
    thread, t_status, _ = await _run(tmp_path / "thread", process=False, chunk=97)
    process, p_status, pids = await _run(
        tmp_path / "process", process=True, chunk=97, settings_after_start=True
    )
    # the stream has what the comparison is about: events of several checks, alarms opened,
    # updated across chunks and cleared, every kind of model state
    assert len(thread["events"]) >= 4
    assert {e["check"] for e in thread["events"]} >= {"limit", "shift"}
    assert {e["device"] for e in thread["events"] if e["check"] == "limit"} >= {address(4)}
    assert any(a["count"] > 97 for a in thread["alarms"]), thread["alarms"]
    assert any(a["state"] == "cleared" for a in thread["alarms"])
    assert {k[2] for k in thread["states"]} >= {"detector", "trend", "profile", "shipment"}
    assert process == thread
    assert p_status["processed"] == t_status["processed"] == len(READINGS)
    assert p_status["events"] == t_status["events"] == len(thread["events"])
    assert p_status["streams"] == t_status["streams"] == 8
    assert (p_status["engine"], t_status["engine"]) == ("process", "thread")
    assert p_status["engine_restarts"] == 0
    assert p_status["last_error"] is None
    assert pids[0] != os.getpid()
    assert not _alive(pids[0])


@pytest.mark.slow
async def test_settings_saved_by_another_process_reach_the_worker_and_its_child(
    tmp_path: Path,
) -> None:
    """Under ``serve --workers`` a sensitivity or a shipment's range set through a worker that
    does not run the AI worker was saved but never applied until a restart. Made that way, they
    now give exactly the events, alarms and states of settings made in the worker's own
    process."""
    (tmp_path / "thread").mkdir()
    (tmp_path / "follower").mkdir()
    thread, _, _ = await _run(tmp_path / "thread", process=False, chunk=97)
    followed, _, _ = await _run(
        tmp_path / "follower", process=True, chunk=97, settings_from_another_process=True
    )
    assert {e["device"] for e in followed["events"] if e["check"] == "limit"} >= {address(4)}
    assert followed == thread


@pytest.mark.slow
async def test_a_recommissioned_device_starts_afresh_in_a_thread_and_a_process_alike(
    tmp_path: Path,
) -> None:
    """Re-commissioned in the middle of its excursion out of the cold-chain range, the logger's
    open alarm is cleared and its detector forgotten: the excursion's next readings open a new
    alarm. Requested through another process for the engine in its own process, the outcome is
    exactly that of the request made in the worker's process with the engine in a thread."""
    (tmp_path / "thread").mkdir()
    (tmp_path / "process").mkdir()
    (tmp_path / "plain").mkdir()
    at = next(
        i for i, r in enumerate(READINGS) if r.device == address(3) and r.seq == 776
    )  # 75 readings into the excursion
    thread, _, _ = await _run(tmp_path / "thread", process=False, chunk=97, recommission_at=at)
    process, _, _ = await _run(
        tmp_path / "process", process=True, chunk=97, recommission_at=at,
        settings_from_another_process=True,
    )  # fmt: skip
    assert process == thread
    plain, _, _ = await _run(tmp_path / "plain", process=False, chunk=97)
    before = [a for a in plain["alarms"] if a["device"] == address(3)]
    after = [a for a in thread["alarms"] if a["device"] == address(3)]
    assert len(after) == len(before) + 1  # the excursion's rest opened a new alarm
    recommissioned = [a for a in after if a["cleared_at_ms"] == RECOMMISSIONED_MS]
    assert len(recommissioned) == 1
    assert (address(3), "*", "recommission") in thread["states"]
    # its detector learnt only from the readings after the re-commissioning
    assert _first_learnt(thread, address(3)) >= READINGS[at].timestamp
    assert _first_learnt(plain, address(3)) < READINGS[at].timestamp


@pytest.mark.slow
async def test_a_recommissioning_a_dying_worker_undid_is_applied_by_the_next_worker(
    tmp_path: Path,
) -> None:
    """The request deletes the device's learnt states; the worker running then may save them
    again with a checkpoint in flight and delete them once more before its next chunk. Killed
    in between, it left them saved, and the next worker took them up: the device kept its old
    detector for good. The next worker to start drops them (a re-commissioning counts as done
    only once a worker recorded it), and keeps what was learnt after one it recorded."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'chainsense.db'}")
    await register(store, *(address(n) for n in range(1, 9)))
    device, detector = address(3), (address(3), COLD.name, "detector")
    at = next(i for i, r in enumerate(READINGS) if r.device == device and r.seq == 776)

    def worker() -> AIService:
        return AIService(
            store=store, schemas=BUILTIN_SCHEMAS, config=AIConfig(chunk=97, process=False)
        )

    try:
        first = worker()
        await first.start()
        await _drain(first, await _fill(store, stop=at))
        await first.stop()
        stale = {k: s for k, s in (await store.anomalies.states()).items() if k[0] == device}
        assert detector in stale
        await worker().recommission(device, now_ms=RECOMMISSIONED_MS)  # through another worker
        for key, state in stale.items():  # the dying worker's checkpoint in flight
            await store.anomalies.put_state(key, state)
        second = worker()
        await second.start()
        try:
            saved = await store.anomalies.states()
            assert detector not in saved
            assert saved[(device, "*", "recommission-applied")] == {"at_ms": RECOMMISSIONED_MS}
            await _drain(second, await _fill(store, start=at))
        finally:
            await second.stop()
        learnt = await _outcome(store)
        assert _first_learnt(learnt, device) >= READINGS[at].timestamp
        third = worker()
        await third.start()
        await third.stop()
        assert (await store.anomalies.states())[detector] == learnt["states"][detector]
    finally:
        await store.close()


def _first_learnt(outcome: dict[str, Any], device: str) -> int:
    state = outcome["states"][(device, COLD.name, "detector")]
    return min(int(s["first_t"]) for s in state["guard"]["streams"].values())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_on", "kill_at"),
    [("processed", len(READINGS) // 3), ("events", 1)],
    ids=["a third in", "just after an alarm opened"],
)
async def test_a_child_killed_mid_stream_is_restarted_from_the_checkpoint(
    tmp_path: Path, kill_on: str, kill_at: int
) -> None:
    (tmp_path / "thread").mkdir()
    (tmp_path / "killed").mkdir()
    thread, _, _ = await _run(tmp_path / "thread", process=False, chunk=97)
    killed, status, pids = await _run(
        tmp_path / "killed", process=True, chunk=97, kill_at=kill_at, kill_on=kill_on
    )
    assert pids[1:] == [-1], "the child was never killed"
    assert status["engine_restarts"] == 1
    assert f"AI engine process {pids[0]} died" in status["last_error"]
    assert status["engine_pid"] not in (None, pids[0])
    assert status["processed"] == len(READINGS)  # each reading once, none lost
    assert killed == thread
    assert not _alive(pids[0])
    assert not _alive(status["engine_pid"])
