"""A black-holed chain RPC under the real platform: the dev chain's Anvil is stopped with SIGSTOP
(its port still accepts connections, nothing answers, as in the issue's black-hole run).
``/readyz`` answers within 2 s every time, the circuit opens, a route that needs the chain fails
at once with 503 + Retry-After, the metrics show it; after SIGCONT everything recovers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Api, make_api

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(
        tmp_path_factory.mktemp("chain-faults"),
        rpc_breaker_cooldown=1.0,
        demo_fleet=False,
        ai_enabled=False,
        market_agent=False,
    )


def _timed_readyz(api: Api) -> tuple[float, int, dict[str, object]]:
    started = time.monotonic()
    answer = api.client.get("/readyz")
    return time.monotonic() - started, answer.status_code, answer.json()


def _wait_stopped(pid: int) -> None:
    """Until every thread of ``pid`` is stopped (state T): SIGSTOP is delivered asynchronously,
    and a node thread already running can still answer a request sent right after kill()."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = {
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for task in Path(f"/proc/{pid}/task").iterdir()
        }
        if states <= {"T", "t"}:
            return
        time.sleep(0.01)
    raise AssertionError(f"anvil {pid} did not stop: thread states {states}")


def test_a_black_holed_rpc_is_not_ready_fast_and_recovers(api: Api, tmp_path: Path) -> None:
    devchain = api.platform.chain.devchain
    assert devchain is not None
    assert devchain.pid is not None
    _, status, body = _timed_readyz(api)
    assert status == 200, body
    assert body["chain_rpc_circuit"] == "closed"
    os.kill(devchain.pid, signal.SIGSTOP)
    try:
        _wait_stopped(devchain.pid)
        seen: list[tuple[float, int, dict[str, object]]] = []
        for _ in range(5):
            seen.append(_timed_readyz(api))
            if seen[-1][2]["chain_rpc_circuit"] == "open":
                break
        print("\n/readyz with the RPC black-holed:", [(round(e, 2), s) for e, s, _ in seen])
        assert all(e < 2.0 for e, _, _ in seen), seen
        assert all(s == 503 for _, s, _ in seen), seen
        last = seen[-1][2]
        assert last["chain_rpc_circuit"] == "open", seen
        chain_check = last["checks"]["chain"]  # type: ignore[index]
        assert chain_check.startswith("failing:")
        assert "circuit open" in chain_check or "no answer within 1.5 s" in chain_check

        started = time.monotonic()
        refused = api.client.post(
            "/v1/devices",
            json={"address": "0x" + "11" * 20},
            headers=api.auth("operator"),
        )
        fast = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert "circuit open" in refused.json()["detail"]
        assert fast < 0.5, fast
        metrics = api.client.get("/metrics").text
        assert 'chainsense_chain_rpc_circuit_state{state="open"} 1.0' in metrics
        assert 'chainsense_unavailable_responses_total{dependency="chain"}' in metrics
    finally:
        os.kill(devchain.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while True:
        _, status, body = _timed_readyz(api)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, body
    assert body["chain_rpc_circuit"] == "closed"
