"""The least a server can do for ``POST /v1/readings``: the ASGI apps of bench/http_floor.py.

Served by uvicorn exactly as ``chainsense serve`` serves the platform (uvloop, httptools, no
access log), with nothing of the platform in them: no store, no AI worker, no anchorer, no
rate limits, no logs, no metrics.

- ``echo``: reads the request's body and answers a fixed acknowledgement (the HTTP exchange).
- ``check``: parses the JSON, builds each reading and recovers its signer (the one thing the
  ceiling measures), compares it with the claimed device, and answers as the platform does
  (201 for one reading, 200 with ``stored`` and ``results`` for a batch). Nothing is stored.

The EIP-712 domain comes from ``FLOOR_CHAIN_ID`` and ``FLOOR_REGISTRY``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from chainsense.identity import Reading, ReadingVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_VERIFIER = ReadingVerifier(
    int(os.environ.get("FLOOR_CHAIN_ID", "31337")),
    os.environ.get("FLOOR_REGISTRY", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
)
_HEADERS = [(b"content-type", b"application/json")]
# About the size of the platform's acknowledgement of one reading.
_ACK = json.dumps(
    {"device": "0x" + "00" * 20, "seq": 1, "status": "stored", "leaf": "0x" + "00" * 32}
).encode()


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await _body(receive)
    await _answer(send, 201, _ACK)


def _checked(obj: dict[str, Any]) -> bool:
    reading = Reading.from_json(obj)
    signature = bytes.fromhex(obj["signature"][2:])
    return _VERIFIER.recover(reading, signature) == reading.device


async def check(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    obj = json.loads(await _body(receive))
    if "readings" not in obj:
        await _answer(send, 201 if _checked(obj) else 403, _ACK)
        return
    results = [{"status": "stored" if _checked(o) else "refused"} for o in obj["readings"]]
    stored = sum(r["status"] == "stored" for r in results)
    await _answer(send, 200, json.dumps({"stored": stored, "results": results}).encode())
