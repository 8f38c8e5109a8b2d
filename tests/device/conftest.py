"""A real ChainSense server (create_app under uvicorn, its own Anvil) in a background thread, that
tests can stop and start again on the same data dir and port, as a platform outage looks to a
device."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from chainsense.api import create_app
from chainsense.config import Settings
from chainsense.platform import Platform
from tests.support import free_port

T = TypeVar("T")


class LiveServer:
    """``create_app(Settings(data_dir=...))`` served by uvicorn on a loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.anvil_port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._platform: Platform | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def platform(self) -> Platform:
        assert self._platform is not None, "the server is not running"
        return self._platform

    def start(self, timeout: float = 120.0) -> None:
        app = create_app(Settings(data_dir=self.data_dir, anvil_port=self.anvil_port))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        server = uvicorn.Server(config)
        self._server = server

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), name="api")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            assert self._thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.05)
        self._platform = app.state.platform

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(60)
        assert not self._thread.is_alive(), "the server did not stop"
        self._server = self._thread = self._loop = self._platform = None
        with pytest.raises(httpx.ConnectError):
            httpx.get(self.url + "/healthz")

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (where its store lives) and return the result."""
        assert self._loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(60)

    def api_key(self, scope: str) -> str:
        _, key = self.call(self.platform.store.api_keys.create(name=f"test-{scope}", scope=scope))
        return key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("platform"))
    live.start()
    try:
        yield live
    finally:
        if live._server is not None:
            live.stop()
