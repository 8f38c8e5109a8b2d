"""`chainsense serve` startup failures: one line naming the cause and the setting to change,
the documented exit code, and nothing deployed first. Ports are taken by real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.support import free_port, temp_postgres_database


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _serve(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    base.update({"CHAINSENSE_DATA_DIR": str(data_dir), "CHAINSENSE_DEMO_FLEET": "false"})
    return subprocess.run(
        [sys.executable, "-m", "chainsense", "serve", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    return line


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_taken_api_port_fails_before_anything_is_deployed(
    how: str, taken_port: int, tmp_path: Path
) -> None:
    if how == "flag":
        done = _serve(tmp_path, "--port", str(taken_port), CHAINSENSE_ANVIL_PORT=str(free_port()))
    else:
        done = _serve(
            tmp_path, CHAINSENSE_PORT=str(taken_port), CHAINSENSE_ANVIL_PORT=str(free_port())
        )
    assert done.returncode == 2, done.stderr
    line = _error_line(done)
    assert f"the API port {taken_port} on 127.0.0.1 is taken" in line
    assert "CHAINSENSE_PORT" in line
    assert not (tmp_path / "deployments").exists()  # checked before the chain starts
    assert not (tmp_path / "chain").exists()


def test_a_taken_dev_chain_port_is_one_line_naming_the_setting(
    taken_port: int, tmp_path: Path
) -> None:
    done = _serve(tmp_path, "--port", str(free_port()), CHAINSENSE_ANVIL_PORT=str(taken_port))
    assert done.returncode == 2, done.stderr
    line = _error_line(done)
    assert f"the dev chain's port {taken_port} on 127.0.0.1 is taken" in line
    assert "CHAINSENSE_ANVIL_PORT" in line
    assert not (tmp_path / "deployments").exists()


def test_an_external_chain_without_keys_or_unreachable_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rpc = {"CHAINSENSE_RPC_URL": url, "CHAINSENSE_RPC_RETRIES": "0", "CHAINSENSE_RPC_TIMEOUT": "2"}
    no_keys = _serve(tmp_path, "--port", str(free_port()), **rpc)
    assert no_keys.returncode == 2, no_keys.stderr
    assert "CHAINSENSE_DEPLOYER_KEY is not set" in _error_line(no_keys)

    keys = {f"CHAINSENSE_{role}_KEY": ANVIL_DEV_KEYS[i]  # well-known Anvil development keys
            for i, role in enumerate(("DEPLOYER", "OPERATOR", "ANCHORER"))}  # fmt: skip
    down = _serve(tmp_path, "--port", str(free_port()), **rpc, **keys)
    assert down.returncode == 3, down.stderr
    line = _error_line(down)
    assert line.startswith("error: startup failed: chain RPC at")
    assert url in line


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with temp_postgres_database() as url:
        yield url


@pytest.mark.postgres
def test_workers_exit_2_on_a_taken_api_port(
    postgres_url: str, taken_port: int, tmp_path: Path
) -> None:
    done = _serve(
        tmp_path, "--workers", "2", "--port", str(taken_port),
        CHAINSENSE_DATABASE_URL=postgres_url, CHAINSENSE_ANVIL_PORT=str(free_port()),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"the API port {taken_port} on 127.0.0.1 is taken" in _error_line(done)
    assert not (tmp_path / "chain").exists()


@pytest.mark.postgres
@pytest.mark.slow
def test_workers_exit_3_with_one_line_when_the_chain_is_unreachable(
    postgres_url: str, tmp_path: Path
) -> None:
    """A worker's startup failure stops every worker and exits with one process's code (it
    used to exit 0, after a minute of uvicorn's health-check timeouts)."""
    url = f"http://127.0.0.1:{free_port()}"
    keys = {f"CHAINSENSE_{role}_KEY": ANVIL_DEV_KEYS[i]  # well-known Anvil development keys
            for i, role in enumerate(("DEPLOYER", "OPERATOR", "ANCHORER"))}  # fmt: skip
    done = _serve(
        tmp_path, "--workers", "2", "--port", str(free_port()),
        CHAINSENSE_DATABASE_URL=postgres_url, CHAINSENSE_RPC_URL=url,
        CHAINSENSE_RPC_RETRIES="0", CHAINSENSE_RPC_TIMEOUT="2", **keys,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: startup failed: chain RPC at")
    assert url in lines[0]


def test_make_run_passes_args_to_serve(taken_port: int, tmp_path: Path) -> None:
    """`make run ARGS="--port N"` reaches `chainsense serve` (shown by its error for a taken N)."""
    root = Path(__file__).parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    env.update({"CHAINSENSE_DATA_DIR": str(tmp_path), "CHAINSENSE_ANVIL_PORT": str(free_port())})
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(root), "run", f"ARGS=--port {taken_port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"the API port {taken_port} on 127.0.0.1 is taken" in done.stderr, done.stderr
    assert not (tmp_path / "deployments").exists()


@pytest.mark.chain
@pytest.mark.slow
def test_commands_follow_a_server_started_on_another_port(tmp_path: Path) -> None:
    """`serve --port P` records its URL in the data dir; `device list` (no port setting) finds it,
    and a SIGTERM removes the record."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    env = {**base, "CHAINSENSE_DATA_DIR": str(tmp_path), "CHAINSENSE_DEMO_FLEET": "false",
           "CHAINSENSE_ANVIL_PORT": str(free_port())}  # fmt: skip
    log = (tmp_path.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainsense", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        record = tmp_path / "server.json"
        key = subprocess.run(
            [sys.executable, "-m", "chainsense", "apikey", "create", "--name", "t"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        ).stdout.strip()  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            listed = subprocess.run(
                [sys.executable, "-m", "chainsense", "device", "list", "--json"],
                env={**env, "CHAINSENSE_API_KEY": key}, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            if listed.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
        assert json.loads(record.read_text())["url"] == f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    assert proc.returncode == 128 + signal.SIGTERM
    assert not record.exists()
