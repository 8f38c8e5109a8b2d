"""The fast path of POST /v1/readings (api/fastingest.py) answers exactly as the FastAPI route.

Two platforms with the same settings, each with its own fresh dev chain (same deployer, so the
same chain id and DeviceRegistry address: one signature is valid on both) and its own database:
``fast`` serves the route by the fast path, ``stack`` by FastAPI and its middleware
(``CHAINSENSE_FAST_INGEST=false``). Every request goes to both, in the same order, and the two
answers must have the same status, the same headers in the same order (a new random
``X-Request-ID`` aside) and the same body; the request counters in /metrics must move the same.
Rate limits are on, with small bursts, so 429s come up by the same counts on both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from chainsense.api.fastingest import FastIngest
from chainsense.identity import DeviceKey
from chainsense.observability.metrics import metrics
from chainsense.store.errors import StoreUnavailableError
from tests.api.conftest import Api, make_api

pytestmark = pytest.mark.chain

JSON = {"Content-Type": "application/json"}
ADDRESS_BURST = 120  # keyless requests per app before 429: above what the cases send
SETTINGS: dict[str, Any] = {
    "rate_limit_enabled": True,
    "rate_limit_address_rate": 0.01,
    "rate_limit_address_burst": ADDRESS_BURST,
    "rate_limit_device_rate": 0.01,
    "rate_limit_device_burst": 3,
    "shed_max_in_flight": 2,
    "shed_max_queue": 0,
    "max_body_bytes": 64 * 1024,
    "max_batch": 5,
}


class Counted:
    """The fast path, counting the requests it served."""

    def __init__(self, inner: FastIngest) -> None:
        self.inner = inner
        self.served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.served += 1
        await self.inner(scope, receive, send)


@dataclass
class Pair:
    fast: Api
    stack: Api
    counted: Counted

    def device(self) -> DeviceKey:
        key = DeviceKey.generate()
        self.fast.register(key)
        self.stack.register(key)
        return key

    def sign(self, key: DeviceKey, seq: int, **kwargs: Any) -> dict[str, Any]:
        return self.fast.sign(key, seq, **kwargs)

    def both(
        self,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Any, Any]:
        """POST the same request to both; assert the answers are the same; return them."""
        answers = []
        for api in (self.fast, self.stack):
            served = self.counted.served
            before = _request_counts()
            if content is None and body is not None:
                response = api.client.post("/v1/readings", json=body, headers=headers)
            else:
                response = api.client.post("/v1/readings", content=content, headers=headers)
            answers.append((response, _delta(before, _request_counts())))
            assert self.counted.served == served + (api is self.fast), "the wrong path served"
        (fast, fast_counts), (stack, stack_counts) = answers
        assert fast.status_code == stack.status_code, (fast.text, stack.text)
        fast_headers, fast_seconds = _comparable(fast.headers.raw, headers)
        stack_headers, stack_seconds = _comparable(stack.headers.raw, headers)
        assert fast_headers == stack_headers
        fast_body, fast_waits = _body_comparable(fast.content)
        stack_body, stack_waits = _body_comparable(stack.content)
        fast_seconds += fast_waits
        stack_seconds += stack_waits
        assert len(fast_seconds) == len(stack_seconds)
        assert all(abs(a - b) <= 1 for a, b in zip(fast_seconds, stack_seconds, strict=True))
        assert fast_body == stack_body
        assert fast_counts == stack_counts
        assert fast_counts, "the request was not counted"
        return fast, stack


Counts = dict[tuple[Any, ...], float]
_COUNTED = (
    "chainsense_http_requests",
    "chainsense_readings_ingested",
    "chainsense_rate_limited_requests",
    "chainsense_shed_requests",
    "chainsense_unavailable_responses",
)


def _request_counts() -> Counts:
    """The request and reading counters, and the count of the request duration histogram."""
    counts: Counts = {}
    for family in metrics().registry.collect():
        wanted = "_total" if family.name in _COUNTED else None
        if family.name == "chainsense_http_request_duration_seconds":
            wanted = "_count"
        for sample in family.samples if wanted else ():
            if sample.name.endswith(wanted or ""):
                counts[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return counts


def _delta(before: Counts, after: Counts) -> Counts:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


_SECONDS = re.compile(rb"(?<=t=)\d+$|^\d+$")
_RETRY_AFTER = re.compile(rb"retry after (\d+) s")


def _body_comparable(body: bytes) -> tuple[bytes, list[int]]:
    """The body, and apart the seconds of a "retry after N s" in it: they come from the same
    clock as ``Retry-After`` and may differ by one between the two requests as well."""
    found = _RETRY_AFTER.search(body)
    if not found:
        return body, []
    return body[: found.start(1)] + b"<s>" + body[found.end(1) :], [int(found.group(1))]


def _comparable(
    raw: list[tuple[bytes, bytes]], sent: dict[str, str] | None
) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """The headers, in order, and apart the seconds until a rate limit resets (``t=``,
    ``Retry-After``): rounded up from a clock, they may differ by one between two requests a
    moment apart. A request id other than the client's (none, or not a sane one) is random: only
    its shape counts."""
    out = []
    seconds: list[int] = []
    given = {k.lower(): v.encode() for k, v in (sent or {}).items()}
    for name, value in raw:
        name = name.lower()
        if name == b"x-request-id" and value != given.get("x-request-id"):
            assert re.fullmatch(rb"[0-9a-f]{16}", value)
            value = b"<random>"
        elif name in (b"ratelimit", b"retry-after"):
            found = _SECONDS.search(value)
            if found:
                seconds.append(int(found.group()))
                value = value[: found.start()] + b"<s>"
        out.append((name, value))
    return out, seconds


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with ExitStack() as stack:
        fast = stack.enter_context(
            contextmanager(make_api)(tmp_path_factory.mktemp("fast"), **SETTINGS)
        )
        slow = stack.enter_context(
            contextmanager(make_api)(
                tmp_path_factory.mktemp("stack"), fast_ingest=False, **SETTINGS
            )
        )
        app: Any = fast.client.app
        assert isinstance(app.fast_ingest, FastIngest)
        assert slow.client.app.fast_ingest is None  # type: ignore[attr-defined]
        assert fast.platform.chain.deployment.chain_id == slow.platform.chain.deployment.chain_id
        registry = fast.platform.chain.deployment.address("DeviceRegistry")
        assert registry == slow.platform.chain.deployment.address("DeviceRegistry")
        counted = Counted(app.fast_ingest)
        app.fast_ingest = counted
        yield Pair(fast, slow, counted)


def test_stored_replayed_conflicting_and_stale_readings(pair: Pair) -> None:
    key = pair.device()
    first = pair.sign(key, 2)
    assert pair.both(first)[0].status_code == 201
    assert pair.both(first)[0].status_code == 200  # identical replay, same id
    assert pair.both(pair.sign(key, 2, values=(1, 2)))[0].status_code == 409
    over = pair.both(pair.sign(key, 1))[0]  # stale, and the device's 4th request: limited
    assert over.status_code == 429
    assert over.headers["retry-after"]


def test_batches_with_good_and_bad_readings(pair: Pair) -> None:
    key = pair.device()
    good = [pair.sign(key, seq) for seq in (1, 2, 3)]
    bad = dict(pair.sign(key, 4), signature="0x" + "11" * 65)
    fast, _ = pair.both({"readings": [*good, bad, good[0]]})
    assert fast.status_code == 200
    assert fast.json()["stored"] == 3
    assert pair.both({"readings": [good[0]] * 6})[0].status_code == 413
    assert pair.both({"readings": []})[0].status_code == 422
    assert pair.both({"readings": {}})[0].status_code == 422
    assert pair.both({"readings": [good[0]], "extra": 1})[0].status_code == 422


def test_refused_readings(pair: Pair) -> None:
    key = pair.device()
    stranger = DeviceKey.generate()
    cases: list[tuple[Callable[[], Any], int]] = [
        (lambda: pair.sign(stranger, 1), 403),
        (lambda: pair.sign(key, 1, chain_id=999), 401),
        (lambda: dict(pair.sign(key, 1), signature="0x12"), 422),
        (lambda: dict(pair.sign(key, 1), colour="red"), 422),
        (lambda: {k: v for k, v in pair.sign(key, 1).items() if k != "seq"}, 422),
        (lambda: pair.sign(key, 1, values=(1,)), 422),
        (lambda: [pair.sign(key, 1)], 422),
        (lambda: "a reading", 422),
    ]
    for body, status in cases:
        assert pair.both(body())[0].status_code == status


def test_the_json_gate(pair: Pair) -> None:
    reading = json.dumps(pair.sign(pair.device(), 1)).encode()
    cases = [
        (b"{", JSON, 400),
        (b'{"a": 1, "a": 2}', JSON, 400),
        (b"[" * 40 + b"]" * 40, JSON, 400),
        (b'{"seq": NaN}', JSON, 400),
        (b'{"x": "\\ud800"}', JSON, 400),
        (b"\xff\xfe", JSON, 400),
        (reading, {"Content-Type": "text/plain"}, 415),
        (reading, {"Content-Type": "application/json; charset=latin-1"}, 415),
        (reading, {}, 415),
        (b"", JSON, 422),
        (b" " * (64 * 1024 + 1), JSON, 413),
        (reading, {"Content-Type": "application/vnd.reading+json"}, 201),
    ]
    for content, headers, status in cases:
        fast, _ = pair.both(content=content, headers=headers)
        assert fast.status_code == status, (content[:40], fast.text)
        if status == 413:
            assert fast.headers["connection"] == "close"


def test_request_ids_and_api_keys(pair: Pair) -> None:
    key = pair.device()
    pair.both(pair.sign(key, 1), headers={"X-Request-ID": "trace-me.1"})
    pair.both(pair.sign(key, 2), headers={"X-Request-ID": "not a sane id!"})
    # a valid key is counted against its own bucket (the same key name on both platforms is
    # not the same secret: each app only knows its own, so send each its own)
    for api in (pair.fast, pair.stack):
        answer = api.client.post("/v1/readings", json=pair.sign(key, 3), headers=api.auth("reader"))
        assert answer.headers["ratelimit-policy"].startswith('"key"')
    pair.both(pair.sign(key, 4), headers={"X-API-Key": "cs_invented"})


def test_store_unavailable_and_unexpected_errors(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = pair.device()

    async def down(items: Any, **_: Any) -> Any:
        raise StoreUnavailableError("sqlite:///x", "disk I/O error")

    for api in (pair.fast, pair.stack):
        monkeypatch.setattr(api.platform.ingest, "ingest", down)
    fast, _ = pair.both(pair.sign(key, 1))
    assert fast.status_code == 503
    assert fast.headers["retry-after"] == "2"

    async def broken(items: Any, **_: Any) -> Any:
        raise RuntimeError("a bug")

    for api in (pair.fast, pair.stack):
        monkeypatch.setattr(api.platform.ingest, "ingest", broken)
    transport: Any = pair.stack.client._transport  # the stack re-raises to the server
    monkeypatch.setattr(transport, "raise_server_exceptions", False)
    answers = [
        api.client.post("/v1/readings", json=pair.sign(key, 2)) for api in (pair.fast, pair.stack)
    ]
    # the same 500 problem; the fast path's also carries the security headers and request id
    assert [a.status_code for a in answers] == [500, 500]
    assert answers[0].content == answers[1].content
    assert answers[0].headers["x-content-type-options"] == "nosniff"
    assert "x-request-id" in answers[0].headers


def test_overload_is_shed_the_same(pair: Pair) -> None:
    key = pair.device()
    apis = (pair.fast, pair.stack)

    async def leave(shedder: Any) -> None:
        shedder.leave()

    for api in apis:  # every slot taken, and no queue (shed_max_queue=0)
        shedder = api.client.app.state.shedder  # type: ignore[attr-defined]
        for _ in range(shedder.max_in_flight):
            assert api.client.portal.call(shedder.enter) is None  # type: ignore[union-attr]
    try:
        fast, _ = pair.both(pair.sign(key, 1))
        assert fast.status_code == 503
        assert "queue-full" in fast.json()["detail"]
    finally:
        for api in apis:
            shedder = api.client.app.state.shedder  # type: ignore[attr-defined]
            for _ in range(shedder.max_in_flight):
                api.client.portal.call(leave, shedder)  # type: ignore[union-attr]
    assert pair.both(pair.sign(key, 1))[0].status_code == 201


def test_other_routes_and_methods_still_go_through_fastapi(pair: Pair) -> None:
    served = pair.counted.served
    for api in (pair.fast, pair.stack):  # to both: the address buckets stay in step
        assert api.client.get("/v1/readings").status_code == 401
        assert api.client.put("/v1/readings", json={}).status_code == 405
        slash = api.client.post("/v1/readings/", json={}, follow_redirects=False)
        assert slash.status_code == 307  # FastAPI's redirect to /v1/readings
        operation = api.client.get("/openapi.json").json()["paths"]["/v1/readings"]["post"]
        assert operation["summary"] == "Submit one signed reading, or a batch"
    assert pair.counted.served == served


def test_the_address_limit_comes_at_the_same_request(pair: Pair) -> None:
    key = pair.device()
    answers: list[int] = []
    while 429 not in answers and len(answers) <= ADDRESS_BURST:  # each pair answered the same
        answers.append(pair.both(content=b"{", headers=JSON)[0].status_code)
    assert answers[-1] == 429, "the address burst was not used up"
    refused = pair.both(pair.sign(key, 1))[0]
    assert refused.status_code == 429
    assert refused.json()["type"] == "/problems/rate-limited"
