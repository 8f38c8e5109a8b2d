"""Acknowledging an alarm from the console (needs the alarm lifecycle API: /v1/alarms, which the
AI work adds; until that is merged this file skips, naming why).

A cold-chain logger sends a steady temperature long enough for its detector to learn it, then
a run of far-off values; the test waits for the alarm through the API, opens the alarm list in
Chromium, acknowledges it there and checks the API agrees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from chainsense.identity import DeviceKey

from .conftest import Server, Watch, axe_violations, new_context, screenshot, sign_in

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@pytest.fixture
def browsing(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    context, watch = new_context(browser)
    page = context.new_page()
    yield page, watch
    context.close()
    watch.check()


def _alarm_of(server: Server, device: str, timeout: float = 90) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        r = server.http.get(
            "/v1/alarms",
            params={"device": device, "state": "active"},
            headers=server.auth("reader"),
        )
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        if items:
            alarm: dict[str, object] = items[0]
            return alarm
        assert time.monotonic() < deadline, "no alarm was raised for the out-of-range run"
        time.sleep(1)


def test_an_alarm_is_acknowledged_from_the_console(
    browsing: tuple[Page, Watch], server: Server
) -> None:
    assert "/v1/alarms" in server.http.get("/openapi.json").json()["paths"]
    page, _ = browsing
    key = DeviceKey.generate()
    server.register(key)
    steady = [500 + (i % 5) for i in range(300)]
    server.send(key, steady, spacing_ms=1000)
    server.send(key, [2500] * 10, spacing_ms=100)
    alarm = _alarm_of(server, key.address)
    sign_in(page, server, "operator", f"/alarms?device={key.address}")
    row = page.locator(f"#alarms-table tr[data-alarm='{alarm['id']}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    screenshot(page, "alarms-open-desktop")
    assert axe_violations(page) == []
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_contain_text("acknowledged", timeout=15_000)
    r = server.http.get(f"/v1/alarms/{alarm['id']}", headers=server.auth("reader"))
    assert r.json()["acknowledged"] is True
    row.get_by_role("button", name="Clear").click()
    # the default filter shows active alarms: a cleared one leaves the list
    expect(row).to_have_count(0, timeout=15_000)
    r = server.http.get(f"/v1/alarms/{alarm['id']}", headers=server.auth("reader"))
    assert r.json()["state"] == "cleared"
