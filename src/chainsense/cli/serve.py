"""``chainsense serve``: the API and the console, with the dev chain when no RPC URL is set.

Startup is checked before anything is deployed: the API port is bound first (and handed to
uvicorn, so nothing can take it in between), and the dev chain's port is checked before Anvil
starts. A startup failure is one line naming the cause and the setting to change:

- exit 2: a port is taken, or a setting cannot work (``ConfigError``);
- exit 3: the chain cannot be started or reached, or a deployment transaction failed.

While it runs, ``<data dir>/server.json`` records the URL it serves, so the CLI's other commands
find this server with no setting even when it was started with ``--port`` (see
:func:`chainsense.cli._common.api_base`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chainsense.cli._common import fail
from chainsense.cli._common import settings as _settings

if TYPE_CHECKING:
    from chainsense.config import Settings

__all__ = ["bind_api_socket", "check_port_free", "serve"]

SERVER_RECORD = "server.json"


def bind_api_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on the API address now; a taken port is a one-line error (exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"the API port {port} on {host} is taken (address already in use); stop what "
                "listens there, or choose another port with CHAINSENSE_PORT or --port",
                2,
            )
        fail(f"cannot listen on {host}:{port} ({exc.strerror}); check CHAINSENSE_HOST", 2)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (we can bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _check_dev_chain_port(settings: Settings) -> None:
    if settings.uses_dev_chain and not check_port_free(settings.anvil_host, settings.anvil_port):
        fail(
            f"the dev chain's port {settings.anvil_port} on {settings.anvil_host} is taken; set "
            "CHAINSENSE_ANVIL_PORT to a free port, or CHAINSENSE_RPC_URL="
            f"{settings.dev_rpc_url} to use the node listening there",
            2,
        )


class _DropAfterFailure(logging.Filter):
    """Drops uvicorn's traceback once the lifespan failed with an error we report in one line."""

    def __init__(self, failures: list[BaseException]) -> None:
        super().__init__()
        self.failures = failures

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.failures and record.levelno >= logging.ERROR)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (CHAINSENSE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="API port (CHAINSENSE_PORT).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (CHAINSENSE_DATA_DIR).")
    ] = None,
    rpc: Annotated[
        str | None,
        typer.Option("--rpc", help="JSON-RPC URL of an EVM chain (CHAINSENSE_RPC_URL)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes (default: every core on PostgreSQL; SQLite serves from one).",
        ),
    ] = None,
) -> None:
    """Serve the API and the console (starting the dev chain when no RPC URL is set)."""
    settings = _settings(rpc)
    update: dict[str, Any] = {}
    if host is not None:
        update["host"] = host
    if port is not None:
        update["port"] = port
    if data_dir is not None:
        update["data_dir"] = data_dir
    if update:
        settings = settings.model_copy(update=update)
    from chainsense.observability.logs import UVICORN_LOG_CONFIG, configure_logging
    from chainsense.serve_cli import serve_workers, worker_count

    configure_logging(fmt=settings.log_format, level=settings.log_level)
    count, message = worker_count(settings, workers)
    if message:
        typer.secho(message, fg="yellow", err=True)
    sock = bind_api_socket(settings.host, settings.port)
    _check_dev_chain_port(settings)
    if count > 1:
        typer.echo(f"ChainSense on {settings.client_api_url}")
        try:
            serve_workers(settings, sock, count)
        finally:
            sock.close()
        return

    import uvicorn

    from chainsense.api import create_app
    from chainsense.api.shedding import accept_backlog
    from chainsense.cli._common import exit_code
    from chainsense.errors import ChainSenseError
    from chainsense.serve_cli import on_startup_failure

    app = create_app(settings)
    app.access_log = settings.access_log
    # overload shedding sees the connections waiting to be accepted (api/shedding.py)
    app.state.shedder.backlog = accept_backlog(sock)
    failures: list[BaseException] = []

    def keep(exc: BaseException) -> None:
        if isinstance(exc, ChainSenseError):
            failures.append(exc)  # reported in one line below, not as uvicorn's traceback

    on_startup_failure(app, keep)
    url = settings.client_api_url
    typer.echo(f"ChainSense on {url}  (console: {url}/, API docs: {url}/docs)")
    if settings.uses_dev_chain:
        typer.echo(f"dev chain: Anvil on {settings.dev_rpc_url}, state in {settings.chain_dir}")
    quiet = _DropAfterFailure(failures)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    record = settings.data_dir / SERVER_RECORD
    config = uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        log_config=UVICORN_LOG_CONFIG,
        access_log=False,  # the app writes it, for less (api/access.py)
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGTERM it stopped on once it is done: exit through Python then, so
    # the record below is removed (the default action would end the process on the spot).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits 3 when the lifespan fails; ours is reported below
        if not failures:
            raise
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
        sock.close()
        record.unlink(missing_ok=True)
    if failures:
        exc = failures[0]
        fail(f"startup failed: {exc}", exit_code(exc))  # type: ignore[arg-type]
    if not server.started:
        raise typer.Exit(3)
