"""``chainsense serve``: one process, or ``--workers N`` processes on PostgreSQL.

With several workers, each is a full platform process behind one listening socket (uvicorn's
process manager); the singletons (anchorer, AI worker, market agent, demo fleet) run in one of
them, elected per role (store/leader.py). The dev chain, when no RPC URL is set, is started once
by this parent process (as ``chainsense chain up``) and the workers use it as an external RPC.
Metrics of every worker are aggregated through ``PROMETHEUS_MULTIPROC_DIR``.

Startup failures exit as one process does (README's exit codes): the parent binds the API socket
itself (a taken port is exit 2 before anything starts), and a worker whose startup fails writes its
one-line reason and exit code to ``<data dir>/startup-failures/<pid>.json``; the parent watches that
directory, stops the other workers at once and exits with that code (uvicorn's own supervisor
would exit 0, after up to a minute of health-check timeouts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from chainsense.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["on_startup_failure", "report_startup_failures", "serve_workers", "worker_count"]

_CHAIN_UP_TIMEOUT_S = 180.0
#: set by the parent for its workers: where a worker reports why its startup failed
STARTUP_REPORTS_ENV = "CHAINSENSE_STARTUP_REPORTS"
WORKERS_ENV = "CHAINSENSE_SERVE_WORKERS"
"""How many workers share the listening socket, and its port: ``N:PORT`` (set by the parent
for its workers, whose settings may not name the port: ``serve --port``)."""


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


def on_startup_failure(app: FastAPI, record: Callable[[BaseException], None]) -> None:
    """Call ``record`` with the exception that stops ``app``'s lifespan before it started
    (never for one raised while stopping); the exception still propagates."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        started = False
        try:
            async with inner(a) as state:
                started = True
                yield state
        except Exception as exc:
            if not started:
                record(exc)
            raise

    app.router.lifespan_context = lifespan


def report_startup_failures(app: FastAPI) -> None:
    """In a worker: write why startup failed where the parent looks (``STARTUP_REPORTS_ENV``)."""
    directory = os.environ.get(STARTUP_REPORTS_ENV)
    if not directory:
        return

    def record(exc: BaseException) -> None:
        from chainsense.cli._common import exit_code
        from chainsense.errors import ChainSenseError

        if isinstance(exc, ChainSenseError):
            report = {"message": f"startup failed: {exc}", "code": exit_code(exc)}
        else:
            report = {"message": f"startup failed: {type(exc).__name__}: {exc}", "code": 3}
        # the parent prints this in one line: drop uvicorn's traceback of it
        logging.getLogger("uvicorn.error").addFilter(lambda r: r.levelno < logging.ERROR)
        path = Path(directory) / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(path)

    on_startup_failure(app, record)


def serve_workers(settings: Settings, sock: Any, count: int) -> None:
    """Serve with ``count`` worker processes (PostgreSQL) on the bound socket ``sock``; exit with
    the code of a worker's startup failure, as one process would."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from chainsense.cli._common import fail
    from chainsense.observability.logs import UVICORN_LOG_CONFIG
    from chainsense.supervisor import install as notice_dead_workers_at_once

    notice_dead_workers_at_once()  # a killed worker is replaced at once, not after 60 s

    typer.echo(f"{count} worker processes (PostgreSQL); singletons elected per role")
    reports = settings.data_dir / "startup-failures"
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True, exist_ok=True)
    os.environ[STARTUP_REPORTS_ENV] = str(reports.resolve())
    os.environ[WORKERS_ENV] = f"{count}:{sock.getsockname()[1]}"
    with _multiprocess_metrics(settings), _shared_dev_chain(settings):
        config = uvicorn.Config(
            "chainsense.api.app:create_worker_app",
            factory=True,
            workers=count,
            # a worker imports and opens its platform before it answers the supervisor's
            # health checks: on a busy machine that takes more than uvicorn's 5 s default
            timeout_worker_healthcheck=60,
            log_level=settings.log_level.lower(),
            log_config=UVICORN_LOG_CONFIG,
            access_log=False,  # each worker's app writes it (api/access.py)
        )
        supervisor = Multiprocess(config, sockets=[sock])
        stop = threading.Event()
        watcher = threading.Thread(
            target=_watch_reports, args=(reports, supervisor.should_exit, stop), daemon=True
        )
        watcher.start()
        try:
            supervisor.run()
        finally:
            stop.set()
            watcher.join()
    failure = _first_report(reports)
    if failure is not None:
        fail(str(failure["message"]), int(failure["code"]))


def _first_report(reports: Path) -> dict[str, Any] | None:
    found = sorted(reports.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    report: dict[str, Any] = json.loads(found[0].read_text())
    return report


def _watch_reports(reports: Path, should_exit: threading.Event, stop: threading.Event) -> None:
    """Stop every worker as soon as one reports a startup failure."""
    while not stop.wait(0.2):
        if any(reports.glob("*.json")):
            should_exit.set()
            return


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
    from chainsense.chain.devchain import DUMP_REPORT
    from chainsense.chain.devkeys import ANVIL_DEV_KEYS

    log = settings.data_dir / "chain-up.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Not in the workers' metrics directory: no sampler runs in `chain up`, so its gauges
        # stayed at their initial 0 and pulled chainsense_dev_chain_state_dump_ok (the minimum
        # over live processes) to 0 for good; the workers report the chain from its dump report.
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainsense", "chain", "up"],
            stdout=subprocess.PIPE,
            stderr=out,
            env=env,
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
        # the workers' /readyz reads how `chain up` saves the chain's state
        os.environ["CHAINSENSE_DEV_CHAIN_REPORT"] = str(settings.chain_dir / DUMP_REPORT)
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
