"""The console in real Chromium against a real ``chainsense serve`` process (its own Anvil and
SQLite data dir, on free ports). Every page records its console errors and every request that
would leave 127.0.0.1 (those are aborted); each test asserts there were none.

Debian's Chromium at /usr/bin/chromium (``make browser`` installs it when missing); Playwright
never downloads a browser here. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from chainsense.identity import DeviceKey, Reading
from chainsense.store import Store
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
COLD = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    chain_id: int
    registry: str
    http: httpx.Client
    seqs: dict[str, int] = field(default_factory=dict)

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def register(self, key: DeviceKey) -> None:
        r = self.http.post(
            "/v1/devices", json={"address": key.address}, headers=self.auth("operator")
        )
        assert r.status_code == 201, r.text
        self.seqs[key.address] = 0

    def send(self, key: DeviceKey, temps: list[int], *, spacing_ms: int = 1000) -> list[int]:
        """Sign and post one cold-chain reading per temperature (centi-degrees), the last one
        timestamped now."""
        now = int(time.time() * 1000)
        readings = []
        for i, temp in enumerate(temps):
            self.seqs[key.address] += 1
            reading = Reading(
                device=key.address,
                seq=self.seqs[key.address],
                timestamp=now - (len(temps) - 1 - i) * spacing_ms,
                schema=COLD.id,
                values=(temp, 600),
            )
            signature = key.sign(reading, self.chain_id, self.registry)
            readings.append(reading.to_json() | {"signature": "0x" + signature.hex()})
        r = self.http.post("/v1/readings", json={"readings": readings})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert all(x["status"] == "stored" for x in results), results
        return [x["id"] for x in results]


async def _make_keys(data_dir: Path) -> dict[str, str]:
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir / 'chainsense.db'}")
    try:
        keys = {}
        for scope in ("admin", "operator", "reader"):
            _, keys[scope] = await store.api_keys.create(name=f"web-{scope}", scope=scope)
        return keys
    finally:
        await store.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("console")
    with ThreadPoolExecutor(1) as pool:  # this fixture may run inside pytest-asyncio's loop
        keys = pool.submit(asyncio.run, _make_keys(data_dir)).result()
    port = free_port()
    env = os.environ | {
        "CHAINSENSE_DATA_DIR": str(data_dir),
        "CHAINSENSE_PORT": str(port),
        "CHAINSENSE_ANVIL_PORT": str(free_port()),
        "CHAINSENSE_DEMO_FLEET": "false",
        "CHAINSENSE_BATCH_MAX_AGE": "1",
        "CHAINSENSE_MARKET_AGENT": "false",
    }
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "chainsense", "serve"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        http = httpx.Client(base_url=url, timeout=30)
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (data_dir / "serve.log").read_text()[-3000:]
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "chainsense serve did not become ready"
            time.sleep(0.25)
        chain = http.get("/v1/chain").json()
        registry = chain["contracts"]["DeviceRegistry"]["address"]
        yield Server(url, keys, chain["chain_id"], registry, http)
        http.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: run `make browser`"
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Watch:
    """What a browser context did that it must not: errors and requests off the machine."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    bytes_by_page: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        assert self.outside == [], f"requests left 127.0.0.1: {self.outside}"
        assert self.errors == [], f"console errors: {self.errors}"


def new_context(browser: Browser, *, phone: bool = False) -> tuple[BrowserContext, Watch]:
    size = {"width": 414, "height": 896} if phone else {"width": 1366, "height": 900}
    context = browser.new_context(
        viewport=size, accept_downloads=True, bypass_csp=False, device_scale_factor=1
    )
    watch = Watch()

    def route(r: Any) -> None:
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            watch.outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)

    def on_page(page: Page) -> None:
        page.on(
            "console",
            lambda m: watch.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: watch.errors.append(f"{page.url}: {e}"))

    context.on("page", on_page)
    return context, watch


def sign_in(page: Page, server: Server, scope: str = "admin", next_path: str = "/") -> None:
    page.goto(server.url + next_path)
    page.wait_for_url("**/login**")
    page.fill("#api_key", server.keys[scope])
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(server.url + next_path)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page (axe injected from node_modules:
    through the page's CSP, which allows only its own scripts, via an evaluate)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
