"""The dev chain persists: a clean stop keeps everything, a kill -9 loses at most the last
``anvil_state_interval`` seconds, and Anvil never outlives a killed ChainSense.

These tests run the real ``chainsense chain up`` command in a subprocess and kill it for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import TransactionNotFound

from chainsense.chain.devchain import (
    DUMP_REPORT,
    DumpReportView,
    DumpStatus,
    read_dump_report,
    write_dump_report,
)
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.support import free_port

pytestmark = [pytest.mark.chain, pytest.mark.slow]

STATE_INTERVAL = 1


class ChainUp:
    """`chainsense chain up` as a child process, on a private port and data dir."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.banner = ""

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        env.update(
            CHAINSENSE_DATA_DIR=str(self.data_dir),
            CHAINSENSE_ANVIL_PORT=str(self.port),
            CHAINSENSE_ANVIL_STATE_INTERVAL=str(STATE_INTERVAL),
        )
        return env

    def start(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chainsense", "chain", "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("state:"):
                self.banner = "".join(lines)
                return self.banner
        self.proc.kill()
        raise AssertionError("chain up did not start:\n" + "".join(lines))

    def stop(self, sig: int = signal.SIGINT) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)
        if self.proc.stdout:
            self.proc.stdout.close()

    def w3(self) -> Web3:
        return Web3(
            Web3.HTTPProvider(f"http://127.0.0.1:{self.port}", request_kwargs={"timeout": 2})
        )


@pytest.fixture
def chain_up(tmp_path: Path) -> Iterator[ChainUp]:
    up = ChainUp(tmp_path / "data", free_port())
    yield up
    if up.proc is not None and up.proc.poll() is None:
        up.proc.kill()
        up.proc.wait()


def _transfer(w3: Web3, nonce_key: str = ANVIL_DEV_KEYS[6]) -> str:
    account = Account.from_key(nonce_key)
    tx = {
        "to": Account.from_key(ANVIL_DEV_KEYS[7]).address,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "nonce": w3.eth.get_transaction_count(account.address),
        "chainId": 31337,
    }
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    return tx_hash.to_0x_hex()


def _mined(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return False
    return True


def test_clean_stop_keeps_everything_and_restart_finds_the_deployment(chain_up: ChainUp) -> None:
    first = chain_up.start()
    assert "deployed now" in first
    tx = _transfer(chain_up.w3())
    chain_up.stop(signal.SIGINT)

    second = chain_up.start()
    assert "found from an earlier start" in second
    addresses = [line.split()[-1] for line in first.splitlines() if line.startswith("  ")]
    assert addresses
    assert all(a in second for a in addresses)
    assert _mined(chain_up.w3(), tx)
    chain_up.stop(signal.SIGTERM)


def test_kill_9_loses_at_most_the_last_state_interval(chain_up: ChainUp) -> None:
    chain_up.start()
    w3 = chain_up.w3()
    old_tx = _transfer(w3)
    time.sleep(STATE_INTERVAL * 2.5)  # at least two periodic dumps happen after old_tx
    chain_up.stop(signal.SIGKILL)

    # Anvil dies with its parent (parent-death signal), so nothing answers on the port any more.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            w3.eth.chain_id  # noqa: B018 - probing the port
        except Exception:
            break
        time.sleep(0.1)
    else:
        pytest.fail("anvil outlived the killed chainsense process")

    banner = chain_up.start()
    assert "found from an earlier start" in banner
    assert _mined(chain_up.w3(), old_tx), "a transaction older than the dump interval was lost"
    chain_up.stop()


def test_the_dump_report_another_process_reads(tmp_path: Path) -> None:
    """What ``serve --workers``' workers read of ``chain up``'s state saves."""
    report = tmp_path / DUMP_REPORT
    missing = read_dump_report(report, 1.0)
    assert not missing.ok
    assert missing.line.startswith("failing: no report from the dev chain's process")

    dumps = DumpStatus()
    write_dump_report(report, dumps)
    assert read_dump_report(report, 1.0) == DumpReportView(True, "ok (first save pending)", None)

    dumps.saved()
    write_dump_report(report, dumps)
    view = read_dump_report(report, 1.0)
    assert view.ok
    assert view.saved_age is not None
    assert 0 <= view.saved_age < 5

    dumps.failed("cannot write the dev chain state: No space left on device")
    write_dump_report(report, dumps)
    view = read_dump_report(report, 1.0)
    assert not view.ok
    assert view.line.startswith("failing for 0 s: cannot write the dev chain state: No space")
    assert "last saved 0 s ago" in view.line

    stale = json.loads(report.read_text())
    stale["reported_at"] -= 11  # five rounds of 1 s, but at least 10 s
    report.write_text(json.dumps(stale))
    view = read_dump_report(report, 1.0)
    assert not view.ok
    assert "last reported 11 s ago" in view.line
    assert read_dump_report(report, 3.0).line.startswith("failing for")  # 15 s allowed
