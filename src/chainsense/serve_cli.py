"""``chainsense serve``: one process, or ``--workers N`` processes on PostgreSQL.

With several workers, each is a full platform process behind one listening socket (uvicorn's
process manager); the singletons (anchorer, AI worker, market agent, demo fleet) run in one of
them, elected per role (store/leader.py). The dev chain, when no RPC URL is set, is started once
by this parent process (as ``chainsense chain up``) and the workers use it as an external RPC.
Metrics of every worker are aggregated through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import typer

from chainsense.config import Settings

__all__ = ["serve_workers", "worker_count"]

_CHAIN_UP_TIMEOUT_S = 180.0


def worker_count(settings: Settings, asked: int | None) -> tuple[int, str | None]:
    """How many worker processes to run, and a message when the ask cannot be honoured."""
    sqlite = not settings.database_url or settings.database_url.startswith("sqlite")
    if sqlite:
        if asked is not None and asked > 1:
            return 1, (
                f"--workers {asked}: SQLite has one writer, so ChainSense serves it from one "
                "process; set CHAINSENSE_DATABASE_URL=postgresql+asyncpg://... to use every core"
            )
        return 1, None
    return (asked if asked is not None else (os.cpu_count() or 1)), None


def serve_workers(settings: Settings, host: str, port: int, count: int) -> None:
    """Serve with ``count`` worker processes (PostgreSQL): uvicorn's process manager."""
    import uvicorn

    from chainsense.observability.logs import UVICORN_LOG_CONFIG

    typer.echo(f"{count} worker processes (PostgreSQL); singletons elected per role")
    with _multiprocess_metrics(settings), _shared_dev_chain(settings):
        uvicorn.run(
            "chainsense.api.app:create_worker_app",
            factory=True,
            host=host,
            port=port,
            workers=count,
            # a worker imports and opens its platform before it answers the supervisor's
            # health checks: on a busy machine that takes more than uvicorn's 5 s default
            timeout_worker_healthcheck=60,
            log_level=settings.log_level.lower(),
            log_config=UVICORN_LOG_CONFIG,
            access_log=settings.access_log,
        )


@contextlib.contextmanager
def _multiprocess_metrics(settings: Settings) -> Iterator[None]:
    path = settings.data_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path.resolve())
    yield


@contextlib.contextmanager
def _shared_dev_chain(settings: Settings) -> Iterator[None]:
    """Start the dev chain once for every worker (when no RPC URL is set)."""
    if not settings.uses_dev_chain:
        yield
        return
    from chainsense.chain.devkeys import ANVIL_DEV_KEYS

    log = settings.data_dir / "chain-up.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainsense", "chain", "up"],
            stdout=subprocess.PIPE,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + _CHAIN_UP_TIMEOUT_S
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            if line.startswith("state:"):
                break
            if time.monotonic() > deadline:
                raise typer.Exit(3)
        else:
            typer.secho(f"error: the dev chain did not start (see {log})", fg="red", err=True)
            raise typer.Exit(3)
        url = f"http://{settings.anvil_host}:{settings.anvil_port}"
        os.environ["CHAINSENSE_RPC_URL"] = url
        for name, key in zip(("DEPLOYER", "OPERATOR", "ANCHORER"), ANVIL_DEV_KEYS, strict=False):
            # the well-known public Anvil development keys, as the single-process dev chain uses
            os.environ.setdefault(f"CHAINSENSE_{name}_KEY", key)
        typer.echo(
            f"dev chain: Anvil on {url} (one for every worker), state in {settings.chain_dir}"
        )
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # `chain up` saves the state and stops Anvil
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
