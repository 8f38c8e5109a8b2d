"""An adversarial corpus: hostile or malformed input on every route that takes any, one table.

Each case says what a stranger sends (method, path, query, headers, body) and what must come
back: the status, the problem type (whose page must resolve), the field named (or that none is),
and, for every case, that nothing was stored or changed (readings, devices, API keys). Run on
SQLite and PostgreSQL through the ``api`` fixture. docs/input.md describes the format refused here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chainsense.identity import DeviceKey
from tests.api.conftest import Api

pytestmark = pytest.mark.chain

JSON = {"Content-Type": "application/json"}
ADDRESS = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
NO_FIELD = "<no field>"
#: Words of Python, not of the API: none may appear in an answer.
PYTHON_WORDS = (
    "Decimal",
    "NoneType",
    "Traceback",
    "sys.",
    "int_max_str_digits",
    "<class",
    "pydantic",
    "dict",
    "Input should",
    "Value error",
    "\\ud800",
)

Body = bytes | Callable[["Ctx"], bytes] | None


@dataclass
class Ctx:
    """What a case may build its body from: a registered device and a signer."""

    api: Api
    device: DeviceKey
    seq: int

    def reading(self, **changes: Any) -> dict[str, Any]:
        """A validly signed reading of the registered device, then ``changes`` applied (a value
        of ``...`` removes the field)."""
        self.seq += 1
        base = self.api.sign(self.device, self.seq)
        for key, value in changes.items():
            if value is ...:
                base.pop(key, None)
            else:
                base[key] = value
        return base

    def senml(self, records: Any = None, **changes: Any) -> dict[str, Any]:
        """A SenML-form reading (signed over the same integers as ``reading()``)."""
        raw = self.reading()
        body = {k: raw[k] for k in ("device", "seq", "timestamp", "signature")}
        body["schema"] = "chainsense.coldchain.v1"
        body["senml"] = (
            records
            if records is not None
            else [{"n": "temperature", "u": "Cel", "v": 4.15}, {"n": "humidity", "v": 62}]
        )
        for key, value in changes.items():
            if value is ...:
                body.pop(key, None)
            else:
                body[key] = value
        return body


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: Body
    status: int
    code: str
    field: str = NO_FIELD
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: dict(JSON))
    auth: str | None = "admin"


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def _raw(template: str) -> Callable[[Ctx], bytes]:
    """A body written as JSON text with ``{reading}`` spliced in (for what json.dumps cannot
    write: duplicate keys, huge numbers, ...)."""

    def build(ctx: Ctx) -> bytes:
        reading = _dumps(ctx.reading()).decode()[1:-1]
        return template.replace("{reading}", reading).encode()

    return build


def _reading(**changes: Any) -> Callable[[Ctx], bytes]:
    return lambda ctx: _dumps(ctx.reading(**changes))


def _senml(records: Any = None, **changes: Any) -> Callable[[Ctx], bytes]:
    return lambda ctx: _dumps(ctx.senml(records, **changes))


# --- 1. every route with a body, every crash class ----------------------------------------------

BODY_ROUTES = [
    ("POST", "/v1/readings"),
    ("POST", "/v1/devices"),
    ("POST", "/v1/verify"),
    ("POST", "/v1/shipments"),
    ("POST", "/v1/shipments/1/delivery"),
    ("POST", "/v1/shipments/1/claims"),
    ("POST", "/v1/market/deposits"),
    ("POST", "/v1/market/orders"),
    ("POST", "/v1/market/orders/1/delivery"),
    ("PUT", f"/v1/market/agents/{ADDRESS}"),
    ("POST", f"/v1/market/agents/{ADDRESS}/orders"),
    ("PUT", f"/v1/charging/chargers/{ADDRESS}/price"),
    ("POST", "/v1/charging/sessions"),
    ("POST", "/v1/charging/sessions/1/close"),
    ("POST", "/v1/settlement/withdrawals"),
    # routes that take no body still refuse a hostile one
    ("POST", f"/v1/devices/{ADDRESS}/revoke"),
    ("POST", "/v1/shipments/1/settle"),
]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEXT = {"Content-Type": "text/plain"}

CRASH_CLASSES: list[tuple[str, bytes, dict[str, str], int, str, str]] = [
    ("deep-array", b"[" * 100_000, JSON, 400, "too-deep", NO_FIELD),
    ("deep-closed-array", b"[" * 5_000 + b"]" * 5_000, JSON, 400, "too-deep", NO_FIELD),
    ("deep-object", b'{"a":' * 50_000, JSON, 400, "too-deep", NO_FIELD),
    ("deep-in-string-is-fine-but-dup", b'{"s": "[[[[[[", "s": 1}', JSON, 400, "duplicate-key", "s"),
    ("lone-surrogate", b'{"device": "\\ud800"}', JSON, 400, "lone-surrogate", "device"),
    ("lone-low-surrogate-key", b'{"\\udc00": 1}', JSON, 400, "lone-surrogate", "(key)"),
    ("invalid-utf8", b'{"device": "\xff\xfe"}', JSON, 400, "invalid-utf8", NO_FIELD),
    ("encoded-surrogate", b'{"device": "\xed\xa0\x80"}', JSON, 400, "invalid-utf8", NO_FIELD),
    ("utf16-body", '{"a": 1}'.encode("utf-16"), JSON, 400, "invalid-utf8", NO_FIELD),
    ("huge-integer", b'{"seq": 1' + b"0" * 5000 + b"}", JSON, 400, "number-too-long", NO_FIELD),
    ("huge-exponent", b'{"seq": 1' + b"0" * 200 + b"e5}", JSON, 400, "number-too-long", NO_FIELD),
    ("duplicate-key", b'{"values": [1], "values": [2]}', JSON, 400, "duplicate-key", "values"),
    ("nan", b'{"seq": NaN}', JSON, 400, "invalid-number", NO_FIELD),
    ("infinity", b'{"seq": -Infinity}', JSON, 400, "invalid-number", NO_FIELD),
    # found by the atheris fuzzer: Decimal cannot hold this exponent (it was a 500)
    (
        "exponent-overflow",
        b'{"v": 4.1e918446744073709551615}',
        JSON,
        400,
        "invalid-number",
        NO_FIELD,
    ),
    ("truncated", b'{"device": ', JSON, 400, "malformed-json", NO_FIELD),
    ("trailing-garbage", b"{} x", JSON, 400, "malformed-json", NO_FIELD),
    ("bom", b"\xef\xbb\xbf{}", JSON, 400, "malformed-json", NO_FIELD),
    ("text-plain", b"{}", TEXT, 415, "unsupported-media-type", "Content-Type"),
    ("form", b"device=0x12&seq=1", FORM, 415, "unsupported-media-type", "Content-Type"),
    ("no-content-type", b"{}", {}, 415, "unsupported-media-type", "Content-Type"),
    (
        "latin1-charset",
        b"{}",
        {"Content-Type": "application/json; charset=latin-1"},
        415,
        "unsupported-media-type",
        "Content-Type",
    ),
]

CASES: list[Case] = [
    Case(f"{name}:{method} {path}", method, path, body, status, code, fld, dict(headers))
    for method, path in BODY_ROUTES
    for name, body, headers, status, code, fld in CRASH_CLASSES
]

# --- 2. the reading format (docs/input.md) ---------------------------------------------------

R = ("POST", "/v1/readings")
SEQ_RANGE = "seq"


def _r(id_: str, body: Body, status: int, code: str, fld: str = NO_FIELD) -> Case:
    return Case(f"reading:{id_}", *R, body, status, code, fld)


CASES += [
    _r("unknown-field", _reading(note="hi"), 422, "unknown-field", "note"),
    _r("unknown-field-id", _reading(id=1), 422, "unknown-field", "id"),
    _r("values-and-senml", _reading(senml=[{"n": "temperature", "v": 1}]), 422,
       "ambiguous-reading", "senml"),
    _r("dup-key-in-reading", _raw('{{reading}, "seq": 99}'), 400, "duplicate-key", "seq"),
    _r("dup-key-in-batch", _raw('{"readings": [{{reading}, "values": [1, 2]}]}'), 400,
       "duplicate-key", "values"),
    _r("missing-device", _reading(device=...), 422, "invalid-reading", "device"),
    _r("missing-seq", _reading(seq=...), 422, "invalid-reading", "seq"),
    _r("missing-timestamp", _reading(timestamp=...), 422, "invalid-reading", "timestamp"),
    _r("missing-schema", _reading(schema=...), 422, "invalid-reading", "schema"),
    _r("missing-values", _reading(values=...), 422, "invalid-reading", "values"),
    _r("missing-signature", _reading(signature=...), 422, "invalid-reading", "signature"),
    _r("seq-zero", _reading(seq=0), 422, "invalid-reading", "seq"),
    _r("seq-negative", _reading(seq=-1), 422, "invalid-reading", "seq"),
    _r("seq-2^63", _reading(seq=2**63), 422, "invalid-reading", "seq"),
    _r("seq-uint64-max", _reading(seq=2**64 - 1), 422, "invalid-reading", "seq"),
    _r("seq-2^64", _reading(seq=str(2**64)), 422, "invalid-reading", "seq"),
    _r("seq-31-digits", _reading(seq=10**30), 422, "invalid-reading", "seq"),
    _r("seq-31-digit-string", _reading(seq=str(10**30)), 422, "invalid-reading", "seq"),
    _r("seq-60-digit-string", _reading(seq="9" * 60), 422, "invalid-reading", "seq"),
    _r("seq-fraction", _reading(seq=1.5), 422, "invalid-reading", "seq"),
    _r("seq-exponent", _raw('{{reading}, "x": 1e3}'), 422, "unknown-field", "x"),
    _r("seq-bool", _reading(seq=True), 422, "invalid-reading", "seq"),
    _r("seq-null", _reading(seq=None), 422, "invalid-reading", "seq"),
    _r("seq-leading-zero", _reading(seq="007"), 422, "invalid-reading", "seq"),
    _r("seq-plus", _reading(seq="+7"), 422, "invalid-reading", "seq"),
    _r("seq-space", _reading(seq=" 7"), 422, "invalid-reading", "seq"),
    _r("seq-hex", _reading(seq="0x7"), 422, "invalid-reading", "seq"),
    _r("seq-arabic-digits", _reading(seq="\u0667"), 422, "invalid-reading", "seq"),
    _r("seq-array", _reading(seq=[1]), 422, "invalid-reading", "seq"),
    _r("timestamp-negative", _reading(timestamp=-1), 422, "invalid-reading", "timestamp"),
    _r("timestamp-2^63", _reading(timestamp=2**63), 422, "invalid-reading", "timestamp"),
    _r("timestamp-future", _reading(timestamp=int(time.time() * 1000) + 10**9), 422,
       "timestamp-in-future", "timestamp"),
    _r("timestamp-text", _reading(timestamp="now"), 422, "invalid-reading", "timestamp"),
    _r("values-count", _reading(values=[1]), 422, "invalid-reading", "values"),
    _r("values-object", _reading(values={"a": 1}), 422, "invalid-reading", "values"),
    _r("values-string", _reading(values="415,620"), 422, "invalid-reading", "values"),
    _r("values-float", _reading(values=[4.15, 62]), 422, "invalid-reading", "values[0]"),
    _r("values-int64-overflow", _reading(values=[2**63, 1]), 422, "invalid-reading",
       "values[0]"),
    _r("values-int64-underflow", _reading(values=[1, str(-(2**63) - 1)]), 422,
       "invalid-reading", "values[1]"),
    _r("values-null", _reading(values=[None, 1]), 422, "invalid-reading", "values[0]"),
    _r("device-short", _reading(device="0x12"), 422, "invalid-reading", "device"),
    _r("device-not-hex", _reading(device="0x" + "zz" * 20), 422, "invalid-reading", "device"),
    _r("device-number", _reading(device=12), 422, "invalid-reading", "device"),
    _r("device-bad-checksum", _reading(device=ADDRESS.replace("F79", "f79")), 422,
       "invalid-reading", "device"),
    _r("device-long-junk", _reading(device="x" * 100_000), 422, "invalid-reading", "device"),
    _r("device-unregistered", lambda c: _dumps(c.api.sign(DeviceKey.generate(), 1)), 403,
       "unknown-device", "device"),
    _r("schema-unknown", _reading(schema="0x" + "00" * 32), 422, "unknown-schema", "schema"),
    _r("schema-short", _reading(schema="0x1234"), 422, "invalid-reading", "schema"),
    _r("schema-number", _reading(schema=5), 422, "invalid-reading", "schema"),
    _r("signature-short", _reading(signature="0x1234"), 422, "invalid-signature", "signature"),
    _r("signature-not-hex", _reading(signature="0x" + "zz" * 65), 422, "invalid-signature",
       "signature"),
    _r("signature-number", _reading(signature=1), 422, "invalid-signature", "signature"),
    _r("signature-zero", _reading(signature="0x" + "00" * 65), 422, "invalid-signature",
       "signature"),
    _r("signature-other-key", lambda c: _dumps(
        c.reading(signature=c.api.sign(DeviceKey.generate(), 1)["signature"])), 401,
       "signature-mismatch", "signature"),
    _r("value-changed-after-signing", lambda c: _dumps(c.reading(values=[416, 620])), 401,
       "signature-mismatch", "signature"),
    _r("senml-not-list", _senml({"n": "temperature"}), 422, "invalid-reading", "senml"),
    _r("senml-record-not-object", _senml([1, 2]), 422, "invalid-reading", "senml[0]"),
    _r("senml-unknown-record-field", _senml([{"n": "temperature", "v": 4.15, "bt": 1},
       {"n": "humidity", "v": 62}]), 422, "unknown-field", "senml[0].bt"),
    _r("senml-missing-name", _senml([{"v": 4.15}, {"n": "humidity", "v": 62}]), 422,
       "invalid-reading", "senml[0].n"),
    _r("senml-duplicate-name", _senml([{"n": "humidity", "v": 62}, {"n": "humidity", "v": 62}]),
       422, "invalid-reading", "senml[1].n"),
    _r("senml-unknown-metric", _senml([{"n": "temperature", "v": 4.15}, {"n": "humidity", "v": 62},
       {"n": "pressure", "v": 1}]), 422, "invalid-reading", "senml[2].n"),
    _r("senml-missing-metric", _senml([{"n": "temperature", "v": 4.15}]), 422,
       "invalid-reading", "senml"),
    _r("senml-wrong-unit", _senml([{"n": "temperature", "u": "K", "v": 4.15},
       {"n": "humidity", "v": 62}]), 422, "invalid-reading", "senml[0].u"),
    _r("senml-too-precise", _senml([{"n": "temperature", "v": 4.155}, {"n": "humidity", "v": 62}]),
       422, "invalid-reading", "senml[0].v"),
    _r("senml-v-text", _senml([{"n": "temperature", "v": "warm"}, {"n": "humidity", "v": 62}]),
       422, "invalid-reading", "senml[0].v"),
    _r("senml-v-bool", _senml([{"n": "temperature", "v": True}, {"n": "humidity", "v": 62}]),
       422, "invalid-reading", "senml[0].v"),
    _r("senml-v-huge-exponent", _raw('{"device": "' + ADDRESS + '", "seq": 1, "timestamp": 1, '
       '"schema": "chainsense.coldchain.v1", "signature": "0x' + "11" * 65 + '", "senml": '
       '[{"n": "temperature", "v": 1e999999}, {"n": "humidity", "v": 62}]}'), 422,
       "invalid-reading", "senml[0].v"),
    _r("senml-schema-unknown", _senml(schema="nope"), 422, "unknown-schema", "schema"),
    _r("senml-schema-number", _senml(schema=1), 422, "invalid-reading", "schema"),
    _r("senml-unknown-field", _senml(extra=1), 422, "unknown-field", "extra"),
    _r("batch-not-list", b'{"readings": {}}', 422, "invalid-body", "readings"),
    _r("batch-empty", b'{"readings": []}', 422, "invalid-body", "readings"),
    _r("batch-extra-key", _raw('{"readings": [{{reading}}], "device": "x"}'), 422,
       "unknown-field", "device"),
    _r("batch-too-large", b'{"readings": [' + b",".join([b"{}"] * 1001) + b"]}", 413,
       "batch-too-large", "readings"),
    _r("body-array", b"[]", 422, "invalid-body"),
    _r("body-string", b'"reading"', 422, "invalid-body"),
    _r("body-number", b"1", 422, "invalid-body"),
    _r("body-null", b"null", 422, "invalid-body"),
    _r("body-empty", b"", 422, "invalid-body"),
    _r("body-whitespace", b"  ", 400, "malformed-json"),
    _r("body-too-large", b'{"a": "' + b"x" * (4 * 1024 * 1024) + b'"}', 413, "body-too-large"),
    _r("long-unknown-key", _reading(**{"k" * 10_000: 1}), 422, "unknown-field",
       '"' + "k" * 40 + '\\u2026"'),
]  # fmt: skip

# A batch answers 200 with a result per reading: its rejected readings are checked by
# test_a_batch_reports_every_reading_and_stores_only_the_good_one, below.


# --- 3. pydantic-modelled bodies: unknown and invalid fields ------------------------------------


def _m(
    id_: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    fld: str,
    auth: str | None = "admin",
) -> Case:
    return Case(f"model:{id_}", method, path, _dumps(body), status, code, fld, auth=auth)


CASES += [
    _m("device-unknown-field", "POST", "/v1/devices", {"address": ADDRESS, "nick": "x"}, 422,
       "invalid-request", "nick"),
    _m("device-bad-address", "POST", "/v1/devices", {"address": "0x12"}, 422,
       "invalid-request", "address"),
    _m("device-missing-address", "POST", "/v1/devices", {}, 422, "invalid-request", "address"),
    _m("device-address-number", "POST", "/v1/devices", {"address": 5}, 422, "invalid-request",
       "address"),
    _m("device-body-array", "POST", "/v1/devices", [], 422, "invalid-request", "(body)"),
    _m("device-bad-metadata", "POST", "/v1/devices", {"address": ADDRESS, "metadata_hash": "0x"},
       422, "invalid-request", "metadata_hash"),
    _m("verify-not-a-proof", "POST", "/v1/verify", {"format": "x"}, 422, "invalid-request",
       "reading"),
    _m("verify-array", "POST", "/v1/verify", [1], 422, "invalid-request", "(body)"),
    _m("withdrawal-unknown", "POST", "/v1/settlement/withdrawals", {"account": 3, "x": 1}, 422,
       "invalid-request", "x"),
    _m("deposit-negative", "POST", "/v1/market/deposits", {"account": 3, "amount": -1}, 422,
       "invalid-request", "amount"),
    _m("deposit-41-digits", "POST", "/v1/market/deposits", {"account": 3, "amount": 10**40}, 422,
       "invalid-request", "amount"),
    _m("order-unknown", "POST", "/v1/market/orders", {"zzz": 1}, 422, "invalid-request", "zzz"),
    _m("mandate-price-zero", "PUT", f"/v1/market/agents/{ADDRESS}", {"meter": ADDRESS,
       "ask_price": 0, "bid_price": 1}, 422, "invalid-request", "ask_price"),
    _m("place-interval-text", "POST", f"/v1/market/agents/{ADDRESS}/orders",
       {"interval": "soon"}, 422, "invalid-request", "interval"),
    _m("price-unknown", "PUT", f"/v1/charging/chargers/{ADDRESS}/price", {"p": 1}, 422,
       "invalid-request", "p"),
    _m("session-empty", "POST", "/v1/charging/sessions", {}, 422, "invalid-request", "account"),
    _m("shipment-loggers-empty", "POST", "/v1/shipments", {"account": 3, "carrier": ADDRESS,
       "loggers": [], "min_value": 1, "max_value": 2, "window_start_ms": 1, "window_end_ms": 2,
       "payment": 1, "penalty_per_breach": 0, "max_penalty": 0}, 422, "invalid-request",
       "loggers"),
    _m("delivery-unknown", "POST", "/v1/shipments/1/delivery", {"q": 1}, 422, "invalid-request",
       "q"),
]  # fmt: skip


# --- 4. query strings, path parameters, headers -------------------------------------------------


def _g(
    id_: str,
    path: str,
    status: int,
    code: str,
    fld: str = NO_FIELD,
    auth: str | None = "admin",
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> Case:
    return Case(f"get:{id_}", method, path, None, status, code, fld, headers or {}, auth)


CASES += [
    _g("limit-zero", "/v1/readings?limit=0", 422, "invalid-request", "limit"),
    _g("limit-negative", "/v1/readings?limit=-1", 422, "invalid-request", "limit"),
    _g("limit-text", "/v1/readings?limit=ten", 422, "invalid-request", "limit"),
    _g("limit-31-digits", "/v1/readings?limit=" + "9" * 31, 422, "invalid-request", "limit"),
    _g("limit-5000-digits", "/v1/readings?limit=" + "9" * 5000, 422, "invalid-request", "limit"),
    _g("since-text", "/v1/readings?since=yesterday", 422, "invalid-request", "since"),
    _g("device-short", "/v1/readings?device=0x12", 422, "invalid-request", "device"),
    _g("device-surrogate", "/v1/readings?device=%ED%A0%80", 422, "invalid-request", "device"),
    _g("device-nul", "/v1/readings?device=%00", 422, "invalid-request", "device"),
    _g("cursor-text", "/v1/readings?cursor=abc", 422, "invalid-request", "cursor"),
    _g("devices-status", "/v1/devices?status=lost", 422, "invalid-request", "status"),
    _g("devices-cursor", "/v1/devices?cursor=1", 422, "invalid-request", "cursor"),
    _g("batches-state", "/v1/batches?state=%F0%9F%92%A3", 422, "invalid-request", "state"),
    _g("export-format", "/v1/export/readings?format=xml", 422, "invalid-request", "format"),
    _g("anomalies-limit", "/v1/anomalies?limit=-5", 422, "invalid-request", "limit"),
    _g("forecast-intervals", f"/v1/devices/{ADDRESS}/forecast?intervals=0", 422,
       "invalid-request", "intervals"),
    _g("verify-onchain", "/v1/verify?onchain=maybe", 422, "invalid-request", "onchain",
       headers=JSON, method="POST"),
    _g("reading-id-zero", "/v1/readings/0", 422, "invalid-request", "reading_id"),
    _g("reading-id-text", "/v1/readings/abc", 422, "invalid-request", "reading_id"),
    _g("reading-id-2^63", f"/v1/readings/{2**63}", 422, "invalid-request", "reading_id"),
    _g("reading-id-31-digits", "/v1/readings/" + "9" * 31, 422, "invalid-request", "reading_id"),
    _g("reading-missing", f"/v1/readings/{2**62}", 404, "not-found"),
    _g("proof-id-negative", "/v1/readings/-1/proof", 422, "invalid-request", "reading_id"),
    _g("device-path-short", "/v1/devices/0x12", 422, "invalid-request", "address"),
    _g("device-path-unknown", f"/v1/devices/{ADDRESS}", 404, "not-found"),
    _g("device-path-script", "/v1/devices/%3Cscript%3E", 422, "invalid-request", "address"),
    _g("schema-unknown", "/v1/schemas/nope", 404, "not-found"),
    _g("batch-id-text", "/v1/batches/x", 422, "invalid-request", "batch_id"),
    _g("shipment-zero", "/v1/shipments/0", 422, "invalid-request", "shipment"),
    _g("interval-negative", "/v1/market/intervals/-1", 422, "invalid-request", "interval"),
    _g("session-text", "/v1/charging/sessions/x", 422, "invalid-request", "session"),
    _g("balances-short", "/v1/settlement/balances/0x1", 422, "invalid-request", "account"),
    _g("problem-upper", "/problems/NOPE", 422, "invalid-request", "code"),
    _g("problem-unknown", "/problems/nope", 404, "not-found"),
    _g("route-unknown", "/v1/nope", 404, "not-found"),
    _g("method-not-allowed", "/v1/readings", 405, "method-not-allowed", method="DELETE"),
    _g("no-key", "/v1/readings", 401, "unauthorized", auth=None),
    _g("unknown-key", "/v1/readings", 401, "unauthorized", auth=None,
       headers={"Authorization": "Bearer cs_nope"}),
    _g("basic-auth", "/v1/readings", 401, "unauthorized", auth=None,
       headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    _g("bearer-empty", "/v1/readings", 401, "unauthorized", auth=None,
       headers={"Authorization": "Bearer "}),
    _g("x-api-key-junk", "/v1/readings", 401, "unauthorized", auth=None,
       headers={"X-API-Key": "' OR 1=1 --" * 30}),
    _g("reader-revokes", f"/v1/devices/{ADDRESS}/revoke", 403, "forbidden", auth="reader",
       method="POST"),
    _g("reader-registers", "/v1/devices", 403, "forbidden", auth="reader", method="POST",
       headers=JSON),
]  # fmt: skip


# --- the runner ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx(api: Api) -> Ctx:
    device = DeviceKey.generate()
    api.register(device)
    return Ctx(api, device, 0)


def snapshot(api: Api) -> tuple[Any, ...]:
    """Everything a hostile request could have changed in the store."""
    store = api.platform.store

    async def take() -> tuple[Any, ...]:
        devices = await store.devices.list(limit=10_000)
        keys = await store.api_keys.list()
        return (
            await store.readings.count(),
            sorted((d.address, d.status, d.last_seq) for d in devices),
            sorted((k.id, k.revoked_at is not None) for k in keys),
        )

    assert api.client.portal is not None
    return api.client.portal.call(take)


_resolved: set[str] = set()


def _check_type_resolves(api: Api, type_: str) -> None:
    if type_ in _resolved:
        return
    page = api.client.get(type_)
    assert page.status_code == 200, (type_, page.status_code)
    assert "text/html" in page.headers["content-type"]
    _resolved.add(type_)


def send(api: Api, ctx: Ctx, case: Case) -> Any:
    body = case.body(ctx) if callable(case.body) else case.body
    headers = dict(case.headers)
    if case.auth is not None:
        headers |= api.auth(case.auth)
    return api.client.request(case.method, case.path, content=body, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_gets_a_problem_and_changes_nothing(api: Api, ctx: Ctx, case: Case) -> None:
    before = snapshot(api)
    response = send(api, ctx, case)
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json", response.text[:200]
    problem = response.json()
    assert problem["type"] == f"/problems/{case.code}", problem
    assert problem["status"] == case.status
    assert problem["title"]
    if case.field == NO_FIELD:
        assert "field" not in problem, problem
    elif case.code == "invalid-request":  # every invalid field is listed; the first is `field`
        assert problem["field"] == problem["errors"][0]["field"]
        assert case.field in [e["field"] for e in problem["errors"]], problem
        assert all(e["message"] and e["in"] for e in problem["errors"])
    else:
        assert problem.get("field") == case.field, problem
    text = response.text
    for word in PYTHON_WORDS:
        assert word not in text, (word, text[:500])
    assert len(text) < 4000, "an answer echoes at most a short part of the input"
    _check_type_resolves(api, problem["type"])
    assert snapshot(api) == before


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 150, len(CASES)


def test_the_unchanged_reading_is_stored(api: Api, ctx: Ctx) -> None:
    """The control: the readings the corpus breaks are valid before they are broken."""
    response = api.client.post("/v1/readings", content=_dumps(ctx.reading()), headers=JSON)
    assert response.status_code == 201, response.text
    response = api.client.post("/v1/readings", content=_dumps(ctx.senml()), headers=JSON)
    assert response.status_code == 201, response.text


def test_a_batch_reports_every_reading_and_stores_only_the_good_one(api: Api, ctx: Ctx) -> None:
    good = ctx.reading()
    bad = [
        ctx.reading(note=1),
        ctx.reading(seq=-1),
        ctx.reading(seq=2**64 - 1),
        ctx.reading(device="\u00e9" * 50),
        ctx.senml(values=[1, 2]),
        "not an object",
    ]
    before = api.count()
    response = api.client.post(
        "/v1/readings", content=_dumps({"readings": [good, *bad]}), headers=JSON
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stored"], body["rejected"]) == (1, len(bad))
    assert api.count() == before + 1
    codes = [r["error"]["type"] for r in body["results"][1:]]
    assert codes == [
        "/problems/unknown-field",
        "/problems/invalid-reading",
        "/problems/invalid-reading",
        "/problems/invalid-reading",
        "/problems/ambiguous-reading",
        "/problems/invalid-reading",
    ]
    assert body["results"][4]["device"] is None  # a malformed device is not echoed
    seq_error = body["results"][2]["error"]["detail"]
    assert "1 to 9223372036854775807 (2^63-1)" in seq_error
    assert "got -1" in seq_error


def test_every_problem_type_page_resolves(api: Api) -> None:
    from chainsense.api.problems import PROBLEM_TYPES

    listing = api.client.get("/problems", headers={"Accept": "application/json"}).json()
    assert {p["code"] for p in listing["items"]} == set(PROBLEM_TYPES)
    for code in PROBLEM_TYPES:
        assert api.client.get(f"/problems/{code}").status_code == 200
    assert "/problems/{code}" in api.client.get("/openapi.json").json()["paths"]


def _iter_codes() -> Iterator[str]:
    import pathlib
    import re

    root = pathlib.Path(__file__).parents[2] / "src" / "chainsense"
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        yield from re.findall(r'Rejection\(\s*\d+,\s*"([a-z0-9-]+)"', text)
        yield from re.findall(r'code="([a-z0-9-]+)"', text)


def test_every_code_the_code_uses_has_a_page() -> None:
    from chainsense.api.problems import PROBLEM_TYPES

    missing = {c for c in _iter_codes() if c not in PROBLEM_TYPES} - {"device-{state.status}"}
    assert not missing


def test_a_failure_after_the_commit_still_reports_what_is_stored(
    api: Api, ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The post-commit hook (the AI worker's wake-up) fails: the readings are committed, so the
    answer must still say so, never 5xx."""

    def broken(_: int) -> None:
        raise RuntimeError("the AI worker's queue is gone")

    monkeypatch.setattr(api.platform.ingest, "on_stored", broken)
    before = api.count()
    batch = {"readings": [ctx.reading(), ctx.reading()]}
    response = api.client.post("/v1/readings", content=_dumps(batch), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 2
    single = api.client.post("/v1/readings", content=_dumps(ctx.reading()), headers=JSON)
    assert single.status_code == 201, single.text
    assert api.count() == before + 3


def test_a_bug_checking_one_reading_refuses_only_that_reading(
    api: Api, ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = api.platform.ingest
    original = pipeline._parse
    poisoned = ctx.reading()

    def parse(item: Any) -> Any:
        if item.get("seq") == poisoned["seq"]:
            raise TypeError("a bug")
        return original(item)

    monkeypatch.setattr(pipeline, "_parse", parse)
    before = api.count()
    good = ctx.reading()
    response = api.client.post(
        "/v1/readings", content=_dumps({"readings": [poisoned, good]}), headers=JSON
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "stored"]
    assert results[0]["error"]["type"] == "/problems/internal-error"
    assert "TypeError" not in response.text
    assert api.count() == before + 1
