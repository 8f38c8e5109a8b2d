"""The ingest pipeline: from a device's JSON to a durable, acknowledged reading.

Each reading goes through these steps, in order, and stops at the first that fails:

1. shape and schema: the fields parse, the schema is known, the values fit it (count, int64,
   scale for SenML input), ``seq`` is at least 1, the timestamp is not too far in the future;
2. signature: it is well formed and recovers the reading's ``device`` in this platform's EIP-712
   domain (chain id + DeviceRegistry);
3. registry: that key is registered and active (the :class:`RegistryView`);
4. sequence and durable commit: the store inserts the whole batch in one transaction and says, per
   reading, stored / identical replay / seq conflict / seq not increasing;
5. only then does the caller get the results, which it turns into the acknowledgement.

One bad reading in a batch never drops the good ones: every reading gets its own result.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from chainsense import strictjson
from chainsense.chain.registry import RegistryView
from chainsense.identity import (
    InvalidReadingError,
    InvalidSignatureError,
    Reading,
    ReadingVerifier,
    struct_hash,
)
from chainsense.identity.reading import INT64_MAX, INT64_MIN
from chainsense.observability.metrics import metrics
from chainsense.observability.tracing import remember_commit, tracer, tracing_on
from chainsense.store import NewReading, Outcome, Store
from chainsense.strictjson import DEFAULT_MAX_DEPTH, quote
from chainsense.telemetry.committer import GroupCommitter
from chainsense.telemetry.schemas import (
    Schema,
    SchemaRegistry,
    UnknownSchemaError,
    ValueScaleError,
)

__all__ = ["BodyError", "IngestPipeline", "IngestResult", "Rejection", "parse_body", "split_body"]

log = logging.getLogger(__name__)

INT63_LIMIT = 2**63  # storage is signed 64-bit: seq and timestamp must stay below this
_CHECK_SLICE = 100
"""A large request is checked this many readings at a time, the event loop answering others in
between (6-10 ms of checks per slice on the development machine)."""
_CATCH_UP_INTERVAL_S = 0.25  # the least time between registry syncs asked by unknown devices


@dataclass(frozen=True)
class Rejection:
    """Why one reading was refused, ready to become an RFC 9457 problem."""

    status: int
    code: str
    title: str
    detail: str
    field: str | None = None
    retry_after: float | None = None
    """Seconds after which a retry can succeed (a rate limit): the Retry-After header."""

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        return body


class BodyError(Exception):
    """The request body as a whole is unusable (not JSON, wrong top-level shape)."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


@dataclass(frozen=True)
class IngestResult:
    """The outcome for one reading of a request, in request order."""

    index: int
    status: str
    """``stored``, ``duplicate`` (identical replay: same id, nothing stored) or ``rejected``."""
    reading_id: int | None = None
    device: str | None = None
    seq: int | None = None
    error: Rejection | None = None

    @property
    def accepted(self) -> bool:
        return self.status in ("stored", "duplicate")


class _Refused(Exception):
    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


def _invalid(field: str | None, detail: str, code: str = "invalid-reading") -> _Refused:
    return _Refused(Rejection(422, code, "Invalid reading", detail, field))


def parse_body(
    raw: bytes, *, max_batch: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[list[Any], bool]:
    """Parse a request body (strict JSON, see :mod:`chainsense.strictjson`) and split it into
    reading objects; the flag says whether it was a batch."""
    try:
        body = strictjson.loads(raw, max_depth=max_depth)
    except strictjson.JSONBodyError as exc:
        raise BodyError(
            Rejection(400, exc.code, _BODY_TITLES[exc.code], exc.detail, exc.field)
        ) from None
    return split_body(body, max_batch=max_batch)


_BODY_TITLES = {
    "malformed-json": "Malformed JSON",
    "invalid-utf8": "Body is not UTF-8",
    "too-deep": "Nested too deep",
    "duplicate-key": "Duplicate key",
    "lone-surrogate": "Lone surrogate",
    "number-too-long": "Number too long",
    "invalid-number": "Not a JSON number",
}


def _invalid_body(detail: str, field: str | None = None) -> BodyError:
    return BodyError(Rejection(422, "invalid-body", "Invalid body", detail, field))


def split_body(body: Any, *, max_batch: int) -> tuple[list[Any], bool]:
    """Split a parsed body into reading objects: one reading object, or ``{"readings": [...]}``
    with nothing else in it. The flag says whether it was a batch."""
    if isinstance(body, dict) and "readings" in body:
        extra = sorted(k for k in body if k != "readings")
        if extra:
            raise BodyError(
                Rejection(
                    422,
                    "unknown-field",
                    "Unknown field",
                    f"unknown field {quote(extra[0])} beside readings; a batch is "
                    '{"readings": [...]} and nothing else',
                    _shown_key(extra[0]),
                )
            )
        items = body["readings"]
        if not isinstance(items, list):
            raise _invalid_body(f"readings must be an array, got {_json_type(items)}", "readings")
        if not items:
            raise _invalid_body(f"readings is empty; send 1 to {max_batch} readings", "readings")
        if len(items) > max_batch:
            raise BodyError(
                Rejection(
                    413,
                    "batch-too-large",
                    "Batch too large",
                    f"{len(items)} readings in one request; the limit is {max_batch}",
                    "readings",
                )
            )
        return items, True
    if isinstance(body, dict):
        return [body], False
    raise _invalid_body(
        f'expected a reading object or {{"readings": [...]}}, got {_json_type(body)}'
    )


class IngestPipeline:
    """Verifies and stores readings. Build one per process and share it."""

    def __init__(
        self,
        *,
        store: Store,
        verifier: ReadingVerifier,
        registry: RegistryView,
        schemas: SchemaRegistry,
        max_future_ms: int = 300_000,
        clock: Callable[[], float] = time.time,
        on_stored: Callable[[int], None] | None = None,
        committer: GroupCommitter | None = None,
    ) -> None:
        self.store = store
        self.committer = committer or GroupCommitter(store.readings.insert_batch)
        """The one writer path: concurrent requests' rows are committed together."""
        self.verifier = verifier
        self.registry = registry
        self.schemas = schemas
        self.max_future_ms = max_future_ms
        self._clock = clock
        self.on_stored = on_stored
        """Called with the largest new reading id after each durable commit (the AI worker's
        wake-up); it must only set a flag or put_nowait, never block."""
        self.admit: Callable[[Sequence[str]], Awaitable[list[float | None]]] | None = None
        """The per-device rate limit (set by the API): given one entry per (request, device)
        whose readings passed the checks (signature verified), in order, the retry-after in
        seconds of each refused entry, None for each admitted one."""
        self._catch_up: asyncio.Future[Any] | None = None
        self._catch_up_at = 0.0

    async def ingest(
        self,
        items: Sequence[Any],
        *,
        transport: str = "http",
        origins: Sequence[int] | None = None,
    ) -> list[IngestResult]:
        """Check every item, store the good ones in one transaction (shared with concurrent
        requests: see telemetry/committer.py), and return a result per item. Returns only after
        the commit: a ``stored`` result is durable.

        ``origins`` gives, per item, the request (message) it came in, when one call carries
        several (the MQTT bridge groups messages): the per-device rate limit counts each
        request once per device, as if it had come alone. Without it, the call is one request."""
        started = time.perf_counter()
        now_ms = int(self._clock() * 1000)
        traced = tracing_on()
        span = None
        if traced:
            span = tracer().start_span("ingest.verify", attributes={"readings": len(items)})
        results, rows, row_index = await self._check_sliced(items, now_ms)
        if any(_unknown_device(r) for r in results) and await self._registry_caught_up():
            self._recheck_unknown(items, now_ms, results, rows, row_index)
        if span is not None:
            span.end()
        m = metrics()
        m.verification_duration.observe(time.perf_counter() - started)
        if rows and self.admit is not None:
            rows, row_index = await self._admit(results, rows, row_index, origins)
        if rows:
            if traced:
                with tracer().start_as_current_span(
                    "ingest.commit", attributes={"rows": len(rows)}
                ) as commit_span:
                    stored = await self.committer.submit(rows)
                    remember_commit(
                        (o.reading_id for o in stored if o.outcome is Outcome.STORED),
                        commit_span,
                    )
            else:
                stored = await self.committer.submit(rows)
            for index, row, outcome in zip(row_index, rows, stored, strict=True):
                results[index] = _result(index, row, outcome.outcome, outcome.reading_id)
            if self.on_stored is not None:
                new = [o.reading_id for o in stored if o.outcome is Outcome.STORED]
                if new:
                    try:  # the readings are committed: nothing after this may fail the request
                        self.on_stored(max(i for i in new if i is not None))
                    except Exception:
                        log.exception("on_stored callback failed after the commit")
        done = [r for r in results if r is not None]
        _count(m, transport, done)
        m.ack_latency.labels(transport=transport).observe(time.perf_counter() - started)
        return done

    async def _registry_caught_up(self) -> bool:
        """Apply the registry's newest events now, before refusing an unknown device: with
        several ``serve`` workers, a device registered through another worker is otherwise
        unknown here until this worker's next poll, and 403 is final for a device. One sync at
        a time, shared by concurrent requests, started at most every ``_CATCH_UP_INTERVAL_S``
        (a request may wait that long), so readings of unknown keys cannot make the platform
        hammer the RPC. False when the chain did not answer."""
        sync = getattr(self.registry, "sync", None)
        if sync is None:
            return False
        task = self._catch_up
        if task is None or task.done():
            now = time.monotonic()
            wait = max(0.0, self._catch_up_at + _CATCH_UP_INTERVAL_S - now)
            self._catch_up_at = now + wait
            task = self._catch_up = asyncio.ensure_future(_after(wait, sync))
        try:
            await asyncio.shield(task)
        except Exception as exc:  # the chain is down: the refusal stands
            log.debug("registry catch-up failed: %s", exc)
            return False
        return True

    def _recheck_unknown(
        self,
        items: Sequence[Any],
        now_ms: int,
        results: list[IngestResult | None],
        rows: list[NewReading],
        row_index: list[int],
    ) -> None:
        """Check again the items refused as unknown devices (every reading of such a device in
        this request, so their order is kept)."""
        again = [i for i, r in enumerate(results) if _unknown_device(r)]
        checked, new_rows, new_index = self._check_all([items[i] for i in again], now_ms)
        for k, i in enumerate(again):
            result = checked[k]
            results[i] = None if result is None else replace(result, index=i)
        rows.extend(new_rows)
        row_index.extend(again[k] for k in new_index)

    async def _admit(
        self,
        results: list[IngestResult | None],
        rows: list[NewReading],
        row_index: list[int],
        origins: Sequence[int] | None,
    ) -> tuple[list[NewReading], list[int]]:
        """Refuse (429) the readings of devices over their rate limit; keep the others. Each
        (request, device) pair is one hit, in the order the requests came."""
        assert self.admit is not None
        pairs = sorted(
            {
                (origins[i] if origins is not None else 0, row.device)
                for i, row in zip(row_index, rows, strict=True)
            }
        )
        waits = await self.admit([device for _, device in pairs])
        refused = {pair: wait for pair, wait in zip(pairs, waits, strict=True) if wait is not None}
        if not refused:
            return rows, row_index
        kept: tuple[list[NewReading], list[int]] = ([], [])
        for index, row in zip(row_index, rows, strict=True):
            wait = refused.get((origins[index] if origins is not None else 0, row.device))
            if wait is None:
                kept[0].append(row)
                kept[1].append(index)
                continue
            results[index] = IngestResult(index, "rejected", device=row.device, seq=row.seq,
                error=Rejection(429, "rate-limited", "Too many requests",
                    f"the device {row.device} is over its rate limit; retry after {wait:g} s",
                    "device", retry_after=wait))  # fmt: skip
        return kept

    async def _check_sliced(
        self, items: Sequence[Any], now_ms: int
    ) -> tuple[list[IngestResult | None], list[NewReading], list[int]]:
        """:meth:`_check_all` on the event loop, ``_CHECK_SLICE`` items at a time, yielding to
        the loop between slices (so a batch of 1,000 holds it ~10 ms at a time, not ~70 ms).

        Not in a worker thread: libsecp256k1 releases the GIL for every recovery, and a thread
        that releases it often waits up to a switch interval (5 ms) to get it back while the
        event loop holds it (the GIL's convoy effect). Measured with ``bench/load.py``: a batch
        of 100 spent 54-101 ms in its checks in a thread against 6-10 ms on the loop, and the
        SQLite writer thread's commits waited behind it too (docs/performance.md)."""
        results: list[IngestResult | None] = []
        rows: list[NewReading] = []
        row_index: list[int] = []
        for start in range(0, len(items), _CHECK_SLICE):
            if start:
                await asyncio.sleep(0)
            part = self._check_all(items[start : start + _CHECK_SLICE], now_ms, start=start)
            results += part[0]
            rows += part[1]
            row_index += part[2]
        return results, rows, row_index

    def _check_all(
        self, items: Sequence[Any], now_ms: int, *, start: int = 0
    ) -> tuple[list[IngestResult | None], list[NewReading], list[int]]:
        """Steps 1-3 for every item: the rejected ones get their result, the others a row.
        Indices (in results and row_index) count from ``start``: ``items`` is a slice."""
        results: list[IngestResult | None] = [None] * len(items)
        rows: list[NewReading] = []
        row_index: list[int] = []
        for index, item in enumerate(items, start=start):
            try:
                reading, signature, digest = self._check(item, now_ms)
            except _Refused as refused:
                results[index - start] = IngestResult(
                    index,
                    "rejected",
                    device=_peek(item, "device"),
                    seq=_peek_int(item, "seq"),
                    error=refused.rejection,
                )
                continue
            except Exception:  # a bug in a check: this reading is refused, the others go on
                log.exception("checking reading %d failed", index)
                results[index - start] = IngestResult(
                    index,
                    "rejected",
                    device=_peek(item, "device"),
                    seq=_peek_int(item, "seq"),
                    error=Rejection(
                        500,
                        "internal-error",
                        "Internal error",
                        "checking this reading failed; the server logged it, nothing was stored",
                    ),
                )
                continue
            rows.append(
                NewReading(
                    device=reading.device,
                    seq=reading.seq,
                    timestamp=reading.timestamp,
                    schema=reading.schema,
                    values=reading.values,
                    signature=signature,
                    struct_hash=digest,
                )
            )
            row_index.append(index)
        return results, rows, row_index

    # --- the checks, in order ---------------------------------------------------------------

    def _check(self, item: Any, now_ms: int) -> tuple[Reading, bytes, bytes]:
        if not isinstance(item, Mapping):
            raise _invalid(None, f"a reading must be a JSON object, got {_json_type(item)}")
        _check_fields(item)
        reading = self._parse(item)
        if reading.timestamp > now_ms + self.max_future_ms:
            raise _invalid(
                "timestamp",
                f"timestamp {reading.timestamp} is {reading.timestamp - now_ms} ms in the "
                f"future; at most {self.max_future_ms} ms of clock skew is accepted",
                "timestamp-in-future",
            )
        signature = _signature(item.get("signature"))
        digest = struct_hash(reading)
        try:
            signer = self.verifier.recover_struct_bytes(digest, signature)
        except InvalidSignatureError as exc:
            raise _invalid("signature", exc.reason, "invalid-signature") from None
        if signer != bytes.fromhex(reading.device[2:]):
            signer_text = self.verifier.recover_struct(digest, signature)
            raise _Refused(
                Rejection(
                    401,
                    "signature-mismatch",
                    "Signature does not match the device",
                    f"the signature recovers {signer_text}, not {reading.device}; it must be an "
                    f"EIP-712 signature for chain id {self.verifier.chain_id} and verifying "
                    f"contract {self.verifier.verifying_contract}",
                    "signature",
                )
            )
        state = self.registry.get(reading.device)
        if state is None:
            raise _Refused(
                Rejection(
                    403,
                    "unknown-device",
                    "Unknown device",
                    f"{reading.device} is not registered in the DeviceRegistry",
                    "device",
                )
            )
        if not state.active:
            what = "revoked" if state.status == "revoked" else "rotated out (a newer key signs)"
            raise _Refused(
                Rejection(
                    403,
                    f"device-{state.status}",
                    "Device not active",
                    f"{reading.device} was {what}; it cannot submit new readings",
                    "device",
                )
            )
        return reading, signature, digest

    def _parse(self, item: Mapping[str, Any]) -> Reading:
        if "senml" in item:
            schema = self._schema_of_senml(item.get("schema"))
            values = self._senml_values(schema, item["senml"])
        else:
            schema_id = _hex32("schema", item["schema"])
            try:
                schema = self.schemas.by_id(schema_id)
            except UnknownSchemaError as exc:
                raise _invalid("schema", str(exc), "unknown-schema") from None
            raw_values = item["values"]
            if not isinstance(raw_values, list):
                raise _invalid(
                    "values", f"expected an array of integers, got {_json_type(raw_values)}"
                )
            if len(raw_values) != len(schema.metrics):
                raise _invalid(
                    "values",
                    f"{schema.name} has {len(schema.metrics)} values "
                    f"({', '.join(m.name for m in schema.metrics)}), got {len(raw_values)}",
                )
            values = [
                _integer(f"values[{i}]", v, INT64_MIN, INT64_MAX, "-2^63", "2^63-1 (int64)")
                for i, v in enumerate(raw_values)
            ]
        seq = _integer("seq", item["seq"], 1, INT63_LIMIT - 1, "1", SIGNED_MAX_TEXT)
        timestamp = _integer(
            "timestamp", item["timestamp"], 0, INT63_LIMIT - 1, "0", SIGNED_MAX_TEXT
        )
        try:
            return Reading(
                device=_address(item["device"]),
                seq=seq,
                timestamp=timestamp,
                schema=schema.id,
                values=tuple(values),
            )
        except InvalidReadingError as exc:  # the device's EIP-55 checksum
            raise _invalid(exc.field, exc.reason) from None

    def _schema_of_senml(self, schema_key: Any) -> Schema:
        if not isinstance(schema_key, str):
            raise _invalid(
                "schema", f"expected a schema name or 0x-hex id, got {_json_type(schema_key)}"
            )
        try:
            return self.schemas.resolve(schema_key)
        except UnknownSchemaError:
            raise _invalid(
                "schema",
                f"no schema {quote(schema_key)}; GET /v1/schemas lists them",
                "unknown-schema",
            ) from None

    def _senml_values(self, schema: Schema, records: Any) -> list[int]:
        if not isinstance(records, list):
            raise _invalid(
                "senml", f"expected an array of SenML records, got {_json_type(records)}"
            )
        by_name: dict[str, tuple[int, Mapping[str, Any]]] = {}
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise _invalid(
                    f"senml[{i}]", f'expected {{"n": name, "v": value}}, got {_json_type(record)}'
                )
            unknown = sorted(k for k in record if k not in _SENML_FIELDS)
            if unknown:
                raise _Refused(
                    Rejection(
                        422,
                        "unknown-field",
                        "Unknown field",
                        f"unknown field {quote(unknown[0])} in a SenML record; a record has "
                        "n, v and optionally u",
                        f"senml[{i}].{_shown_key(unknown[0])}",
                    )
                )
            name = record.get("n")
            if not isinstance(name, str):
                raise _invalid(f"senml[{i}].n", f"expected a metric name, got {_json_type(name)}")
            if name in by_name:
                raise _invalid(f"senml[{i}].n", f"{quote(name)} appears twice")
            by_name[name] = (i, record)
        values: list[int] = []
        for metric in schema.metrics:
            found = by_name.pop(metric.name, None)
            if found is None:
                raise _invalid("senml", f"{schema.name} needs {metric.name} ({metric.unit})")
            i, record = found
            unit = record.get("u")
            if unit is not None and unit != metric.unit:
                shown = quote(unit) if isinstance(unit, str) else _json_type(unit)
                raise _invalid(f"senml[{i}].u", f"{metric.name} is in {metric.unit}, not {shown}")
            value = record.get("v")
            if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
                raise _invalid(
                    f"senml[{i}].v", f"{metric.name}: v must be a number, got {_json_type(value)}"
                )
            try:
                values.append(metric.to_fixed(value))
            except ValueScaleError as exc:
                raise _invalid(f"senml[{i}].v", str(exc)) from None
        if by_name:
            extra = sorted(by_name)[0]
            raise _invalid(
                f"senml[{by_name[extra][0]}].n", f"{schema.name} has no metric {quote(extra)}"
            )
        return values


#: The strict reading format (docs/input.md): these fields and no others.
_COMMON_FIELDS = ("device", "seq", "timestamp", "schema", "signature")
_RAW_FIELDS = frozenset((*_COMMON_FIELDS, "values"))
_SENML_FORM_FIELDS = frozenset((*_COMMON_FIELDS, "senml"))
_SENML_FIELDS = frozenset(("n", "u", "v"))
_UINT_DIGITS = 40  # more digits than any accepted integer has: refused before converting
_DECIMAL_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
SIGNED_MAX_TEXT = "9223372036854775807 (2^63-1)"


def _check_fields(item: Mapping[str, Any]) -> None:
    """Exactly one of ``values`` and ``senml``, every required field, and nothing unknown."""
    if "values" in item and "senml" in item:
        raise _Refused(
            Rejection(
                422,
                "ambiguous-reading",
                "Ambiguous reading",
                "a reading has either values (fixed-point integers) or senml (named values), "
                "not both",
                "senml",
            )
        )
    allowed = _SENML_FORM_FIELDS if "senml" in item else _RAW_FIELDS
    unknown = sorted(k for k in item if k not in allowed)
    if unknown:
        raise _Refused(
            Rejection(
                422,
                "unknown-field",
                "Unknown field",
                f"unknown field {quote(unknown[0])}; a reading has exactly "
                "device, seq, timestamp, schema, values or senml, and signature",
                _shown_key(unknown[0]),
            )
        )
    for name in ("device", "seq", "timestamp", "schema", "values", "signature"):
        if name == "values" and "senml" in item:
            continue
        if name not in item:
            what = "values (or senml)" if name == "values" else name
            raise _invalid(name, f"{what} is required")


def _shown_key(key: str) -> str:
    return key if len(key) <= 64 and key.isprintable() else quote(key)


def _integer(field: str, value: Any, low: int, high: int, low_text: str, high_text: str) -> int:
    """A JSON integer (a number, or a decimal string for numbers past 2^53) within
    [low, high], or a refusal that says the range actually accepted."""
    accepted = f"{field} must be an integer from {low_text} to {high_text}"
    if isinstance(value, bool) or not isinstance(value, int | str):
        got = (
            "a number with a fraction or an exponent"
            if isinstance(value, Decimal)
            else (_json_type(value))
        )
        raise _invalid(field, f"{accepted}, as a JSON number or a decimal string; got {got}")
    if isinstance(value, str):
        if not _DECIMAL_INTEGER.fullmatch(value):
            raise _invalid(
                field,
                f"{accepted}; the string {quote(value)} is not a decimal integer (digits only, "
                "an optional leading -, no leading zeros)",
            )
        if len(value) > _UINT_DIGITS:
            raise _invalid(field, f"{accepted}, got a {len(value.lstrip('-'))}-digit number")
    number: int = int(value)
    if not low <= number <= high:
        text = str(number)
        shown = text if len(text) <= _UINT_DIGITS else f"a {len(text.lstrip('-'))}-digit number"
        raise _invalid(field, f"{accepted}, got {shown}")
    return number


def _hex32(field: str, value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 66 or value[:2] != "0x":
        got = f"a {len(value)}-character string" if isinstance(value, str) else _json_type(value)
        raise _invalid(field, f"expected 0x followed by 64 hex digits, got {got}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise _invalid(field, "expected 0x followed by 64 hex digits (0-9, a-f)") from None


def _address(value: Any) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        got = quote(value) if isinstance(value, str) else _json_type(value)
        raise _invalid("device", f"expected 0x followed by 40 hex digits, got {got}")
    return value


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _signature(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _invalid(
            "signature",
            f"expected 0x-hex of 65 bytes (r, s, v), got {_json_type(value)}",
            "invalid-signature",
        )
    text = value[2:] if value[:2] == "0x" else value
    if len(text) != 130 or not _HEX.fullmatch(text):
        raise _invalid(
            "signature",
            f"expected 0x followed by 130 hex digits (65 bytes: r, s, v), got "
            f"{len(value)} characters",
            "invalid-signature",
        )
    try:
        signature = bytes.fromhex(text)
    except ValueError:
        raise _invalid("signature", "not hex", "invalid-signature") from None
    if len(signature) != 65:
        raise _invalid(
            "signature", f"expected 65 bytes (r, s, v), got {len(signature)}", "invalid-signature"
        )
    return signature


_HEX = re.compile(r"[0-9a-fA-F]*")


def _result(index: int, row: NewReading, outcome: Outcome, reading_id: int | None) -> IngestResult:
    if outcome is Outcome.STORED:
        return IngestResult(index, "stored", reading_id, row.device, row.seq)
    if outcome is Outcome.DUPLICATE:
        return IngestResult(index, "duplicate", reading_id, row.device, row.seq)
    rejection = {
        Outcome.CONFLICT: Rejection(
            409,
            "seq-conflict",
            "Sequence number already used",
            f"seq {row.seq} of {row.device} is already used by a different reading "
            f"(id {reading_id})",
            "seq",
        ),
        Outcome.STALE: Rejection(
            409,
            "seq-not-increasing",
            "Sequence number not increasing",
            f"seq {row.seq} is not above the last stored seq of {row.device}",
            "seq",
        ),
        # The registry view writes the store mirror before it calls a key active, so this is
        # only reachable if the mirror was changed behind the platform's back: retryable.
        Outcome.UNKNOWN_DEVICE: Rejection(
            503,
            "registry-syncing",
            "Device not yet in the store",
            f"{row.device} is active on chain but not yet in the store; retry in a moment",
            "device",
        ),
    }[outcome]
    return IngestResult(index, "rejected", reading_id, row.device, row.seq, rejection)


async def _after(delay: float, action: Callable[[], Awaitable[Any]]) -> Any:
    if delay > 0:
        await asyncio.sleep(delay)
    return await action()


def _unknown_device(result: IngestResult | None) -> bool:
    return result is not None and result.error is not None and result.error.code == "unknown-device"


def _count(m: Any, transport: str, results: list[IngestResult]) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    for status, n in counts.items():
        m.readings_ingested.labels(transport=transport, result=status).inc(n)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float | Decimal) else "null"
    )


def _peek(item: Any, key: str) -> str | None:
    """The device of a refused reading, for its result: only a well-formed address is echoed."""
    value = item.get(key) if isinstance(item, Mapping) else None
    return value if isinstance(value, str) and _ADDRESS.fullmatch(value) else None


def _peek_int(item: Any, key: str) -> int | None:
    value = item.get(key) if isinstance(item, Mapping) else None
    return value if type(value) is int and 0 <= value < INT63_LIMIT else None
