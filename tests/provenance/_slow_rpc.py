"""A JSON-RPC proxy that answers every HTTP request ``delay`` seconds late: a slow (or far away)
node in front of a real Anvil. It counts the HTTP round trips and the JSON-RPC calls by method
(a JSON-RPC batch is one round trip holding several calls).

With ``max_batch`` it also refuses batches of more calls, as capped nodes do: geth answers one
"batch too large" error object (``refuse="error"``), gateways HTTP 413 or, when they take no
batches at all (``max_batch=0``), HTTP 400."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Literal

import aiohttp
from aiohttp import web

from tests.support import free_port


class SlowRpc:
    def __init__(
        self,
        target_url: str,
        delay: float,
        *,
        max_batch: int | None = None,
        refuse: Literal["error", "413", "400"] = "error",
    ) -> None:
        self.target_url = target_url
        self.delay = delay
        self.max_batch = max_batch
        self.refuse = refuse
        self.refused = 0
        #: eth_sendRawTransaction calls to refuse (as a node refuses an underpriced one)
        #: instead of forwarding them, by their place among the ones the proxy has seen since
        #: start (0 is the first), each with the refusal's message.
        self.refuse_sends: dict[int, str] = {}
        self.sends_seen = 0
        self.port = free_port()
        self.round_trips = 0
        self.calls: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> SlowRpc:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset(self) -> None:
        self.round_trips = 0
        self.calls.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        self.round_trips += 1
        await asyncio.sleep(self.delay)
        if (
            isinstance(payload, list)
            and self.max_batch is not None
            and len(payload) > self.max_batch
        ):
            self.refused += 1
            if self.refuse == "error":
                error = {"code": -32600, "message": "batch too large"}
                return web.json_response({"jsonrpc": "2.0", "id": None, "error": error})
            return web.Response(status=int(self.refuse), text="batch refused")
        for call in payload if isinstance(payload, list) else [payload]:
            if isinstance(call, dict):
                self.calls[str(call.get("method"))] += 1
        if isinstance(payload, list) and self.refuse_sends:
            return await self._refusing_some(payload)
        assert self._session is not None
        async with self._session.post(
            self.target_url, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            answer = await upstream.read()
            return web.Response(
                body=answer, status=upstream.status, content_type="application/json"
            )

    async def _refusing_some(self, calls: list[dict[str, object]]) -> web.Response:
        """A batch whose listed raw transactions are answered with an error, the rest forwarded."""
        refused: dict[object, str] = {}
        for call in calls:
            if call.get("method") == "eth_sendRawTransaction":
                why = self.refuse_sends.get(self.sends_seen)
                self.sends_seen += 1
                if why is not None:
                    refused[call.get("id")] = why
        forward = [call for call in calls if call.get("id") not in refused]
        answers: dict[object, object] = {}
        if forward:
            assert self._session is not None
            async with self._session.post(self.target_url, json=forward) as upstream:
                for answer in await upstream.json():
                    answers[answer.get("id")] = answer
        for call_id, why in refused.items():
            error = {"code": -32000, "message": why}
            answers[call_id] = {"jsonrpc": "2.0", "id": call_id, "error": error}
        return web.json_response([answers[call.get("id")] for call in calls])
