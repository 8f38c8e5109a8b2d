"""The HTTP protections in process, on a small app: rate limits (429 + headers), overload
shedding (503 + Retry-After, probes still answered), security headers, CORS on or off."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import socket
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from chainsense.api.limits import RATE_LIMITED, Policies, RateLimitMiddleware
from chainsense.api.security import SecurityHeadersMiddleware, install_cors
from chainsense.api.shedding import (
    SHED,
    LoadShedMiddleware,
    Shedder,
    accept_backlog,
    inherited_listener,
)
from chainsense.limits import Limit, MemoryLimiter

KEYS = {"cs_good_a": 1, "cs_good_b": 2}
PAGE = "<html><script>window.x = 1;</script><script src='/static/app.js'></script></html>"


def _app(gate: asyncio.Event | None = None) -> Starlette:
    async def data(_: Request) -> JSONResponse:
        if gate is not None:
            await gate.wait()
        return JSONResponse({"ok": True})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    return Starlette(routes=[Route("/data", data), Route("/healthz", healthz), Route("/", page)])


def _limited(app: Any, policies: Policies) -> Any:
    async def authenticate(_scope: Any, key: str) -> int | None:
        return KEYS.get(key)

    limiter = MemoryLimiter()
    return RateLimitMiddleware(
        app, limiter=lambda: limiter, policies=policies, authenticate=authenticate
    )


POLICIES = Policies(
    key=Limit("key", rate=0.01, burst=5),
    device=Limit("device", rate=0.01, burst=5),
    address=Limit("address", rate=0.01, burst=3),
)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_flooding_key_gets_429_while_another_key_is_served() -> None:
    async with _client(_limited(_app(), POLICIES)) as http:
        flood = await asyncio.gather(
            *(http.get("/data", headers={"X-API-Key": "cs_good_a"}) for _ in range(20))
        )
        other = await http.get("/data", headers={"Authorization": "Bearer cs_good_b"})
    statuses = [r.status_code for r in flood]
    assert statuses.count(200) == 5
    assert statuses.count(429) == 15
    refused = next(r for r in flood if r.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/rate-limited"
    assert 90 <= int(refused.headers["retry-after"]) <= 100
    assert refused.headers["ratelimit-policy"] == '"key";q=5;w=500'
    assert refused.headers["ratelimit"].startswith('"key";r=0;t=')
    assert other.status_code == 200
    assert other.headers["ratelimit"].startswith('"key";r=4;')
    assert RATE_LIMITED["key"] >= 15


async def test_invented_keys_count_against_the_address_and_probes_are_never_limited() -> None:
    async with _client(_limited(_app(), POLICIES)) as http:
        answers = [
            await http.get("/data", headers={"X-API-Key": f"cs_invented_{i}"}) for i in range(5)
        ]
        probes = [await http.get("/healthz") for _ in range(10)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    assert answers[3].headers["ratelimit-policy"].startswith('"address"')
    assert all(r.status_code == 200 for r in probes)
    assert "ratelimit" not in probes[0].headers


async def test_saturation_is_shed_with_503_and_probes_still_answer() -> None:
    gate = asyncio.Event()
    app = LoadShedMiddleware(
        _app(gate), max_in_flight=2, max_queue=1, queue_timeout=0.2, retry_after=3
    )
    async with _client(app) as http:
        held = [asyncio.create_task(http.get("/data")) for _ in range(2)]
        await asyncio.sleep(0.05)
        timed_out = await http.get("/data")  # waits in the queue, then gives up
        queued = asyncio.create_task(http.get("/data"))
        await asyncio.sleep(0.05)
        queue_full = await http.get("/data")  # the one queue place is taken
        probe = await http.get("/healthz")
        gate.set()
        done = await asyncio.gather(*held, queued)
    assert timed_out.status_code == 503
    assert timed_out.headers["retry-after"] == "3"
    assert timed_out.json()["type"] == "/problems/overloaded"
    assert queue_full.status_code == 503
    assert "queue-full" in queue_full.json()["detail"]
    assert probe.status_code == 200
    assert [r.status_code for r in done] == [200, 200, 200]


async def test_a_lagging_event_loop_sheds_new_requests_at_the_door_until_it_catches_up() -> None:
    # Many devices at once: the backlog waits in the event loop, before the app, where no slot
    # is ever missing; the loop's lag is what shows it (docs/performance.md, "1,200 devices").
    served = 0

    async def data(_: Request) -> JSONResponse:
        nonlocal served
        served += 1
        return JSONResponse({"ok": True})

    shedder = Shedder(
        max_in_flight=100, max_queue=100, queue_timeout=5, retry_after=1, max_wait=0.2
    )
    app = LoadShedMiddleware(Starlette(routes=[Route("/data", data)]), shedder=shedder)
    shed_before = SHED["backlog"]
    async with _client(app) as http:
        admitted = await http.get("/data")
        assert await shedder.enter() is None  # a request arrives: the lag is probed
        time.sleep(0.9)  # noqa: ASYNC251  # and this pass of the loop takes 0.9 s (a backlog)
        shedder.leave()
        await asyncio.sleep(0)
        shed = await http.get("/data")
        answers = []
        for _ in range(100):  # the loop is idle again: requests are served again
            answers.append(await http.get("/data"))
            if answers[-1].status_code == 200:
                break
            await asyncio.sleep(0.05)
    assert admitted.status_code == 200
    assert shed.status_code == 503
    assert "backlog" in shed.json()["detail"]
    assert int(shed.headers["retry-after"]) >= 2  # twice the estimated wait
    assert SHED["backlog"] >= shed_before + 1
    assert answers[-1].status_code == 200
    assert served == 2  # the shed request did no work


async def test_connections_waiting_to_be_accepted_shed_requests_at_the_door() -> None:
    # uvloop accepts one connection per pass of the loop: with many devices opening one
    # connection per request the queue is the listening socket's, where no slot is missing.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
    try:
        waiting = accept_backlog(listener)
        assert waiting is not None
        assert waiting() == 5
        clients.append(listener.accept()[0])
        assert waiting() == 4

        served = 0

        async def data(_: Request) -> JSONResponse:
            nonlocal served
            served += 1
            return JSONResponse({"ok": True})

        shedder = Shedder(max_in_flight=100, max_queue=100, queue_timeout=5, retry_after=1,
                          max_wait=1.0, backlog=lambda: 10**9)  # fmt: skip
        app = LoadShedMiddleware(Starlette(routes=[Route("/data", data)]), shedder=shedder)
        async with _client(app) as http:
            assert await shedder.enter() is None  # the first request: the pass time is probed
            shedder.leave()
            await asyncio.sleep(0)
            shed = await http.get("/data")
            shedder.backlog = waiting  # 4 waiting: the expected wait is a few passes
            answers = []
            for _ in range(100):
                answers.append(await http.get("/data"))
                if answers[-1].status_code == 200:
                    break
                await asyncio.sleep(0.05)
        assert shed.status_code == 503
        assert "backlog" in shed.json()["detail"]
        assert answers[-1].status_code == 200
        assert served == 1
    finally:
        for c in clients:
            c.close()
        listener.close()


async def test_security_headers_and_a_csp_that_allows_the_pages_own_inline_script() -> None:
    async with _client(SecurityHeadersMiddleware(_app())) as http:
        page = await http.get("/")
        data = await http.get("/data")
    digest = base64.b64encode(hashlib.sha256(b"window.x = 1;").digest()).decode()
    csp = page.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.text == PAGE
    for answer in (page, data):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "same-origin"
    assert data.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


@pytest.mark.parametrize("origins", [[], ["https://ops.example"]])
async def test_cors_is_off_unless_configured(origins: list[str]) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/data")
    async def data() -> dict[str, bool]:
        return {"ok": True}

    install_cors(app, origins)
    async with _client(app) as http:
        answer = await http.get("/data", headers={"Origin": "https://ops.example"})
        preflight = await http.options(
            "/data",
            headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"},
        )
    allowed = answer.headers.get("access-control-allow-origin")
    assert allowed == ("https://ops.example" if origins else None)
    assert (preflight.status_code == 200) == bool(origins)


def _worker_sees(listener: socket.socket, port: int, out: Any) -> None:
    """A ``serve --workers`` worker: uvicorn passed it ``listener``; its app looks it up."""
    found = inherited_listener(port)
    if found is None:
        out.put(None)
        return
    whole, mine = accept_backlog(found), accept_backlog(found, share=2)
    assert whole is not None
    assert mine is not None
    out.put((found.fileno() != listener.fileno(), whole(), mine()))


def test_a_worker_finds_the_listening_socket_it_was_handed_and_takes_its_share() -> None:
    """``serve --workers`` workers did not shed on the accept queue: their app is built without
    the socket uvicorn hands them. A spawned process given the socket as uvicorn gives it finds
    it by port among its descriptors, sees the whole queue, and counts half of it as its own
    with two workers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_worker_sees, args=(listener, port, out))
    try:
        child.start()
        assert out.get(timeout=60) == (True, 5, 3)  # its own descriptor; 5 waiting, 3 its share
        child.join(30)
        assert inherited_listener(port + 1 if port < 65535 else port - 1) is None
    finally:
        if child.is_alive():
            child.kill()
        for c in clients:
            c.close()
        listener.close()
