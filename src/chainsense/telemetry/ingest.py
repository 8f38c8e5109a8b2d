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
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chainsense.chain.registry import RegistryView
from chainsense.identity import (
    InvalidReadingError,
    InvalidSignatureError,
    Reading,
    ReadingVerifier,
    struct_hash,
)
from chainsense.observability.metrics import metrics
from chainsense.observability.tracing import tracer
from chainsense.store import NewReading, Outcome, Store
from chainsense.telemetry.committer import GroupCommitter
from chainsense.telemetry.schemas import SchemaRegistry, UnknownSchemaError, ValueScaleError

__all__ = ["IngestPipeline", "IngestResult", "Rejection", "parse_body"]

INT63_LIMIT = 2**63  # storage is signed 64-bit: seq and timestamp must stay below this
_THREAD_MIN_BATCH = 32  # below this, a thread hop costs more than it frees


@dataclass(frozen=True)
class Rejection:
    """Why one reading was refused, ready to become an RFC 9457 problem."""

    status: int
    code: str
    title: str
    detail: str
    field: str | None = None

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


def parse_body(raw: bytes, *, max_batch: int) -> tuple[list[Any], bool]:
    """Split a request body into reading objects; the flag says whether it was a batch."""
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise BodyError(Rejection(400, "malformed-json", "Malformed JSON", str(exc))) from None
    if isinstance(body, dict) and "readings" in body:
        items = body["readings"]
        if not isinstance(items, list):
            raise BodyError(
                Rejection(
                    422, "invalid-body", "Invalid body", "readings must be a list", "readings"
                )
            )
        if not items:
            raise BodyError(
                Rejection(422, "invalid-body", "Invalid body", "readings is empty", "readings")
            )
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
    raise BodyError(
        Rejection(
            422,
            "invalid-body",
            "Invalid body",
            'expected a reading object or {"readings": [...]}',
        )
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

    async def ingest(self, items: Sequence[Any], *, transport: str = "http") -> list[IngestResult]:
        """Check every item, store the good ones in one transaction (shared with concurrent
        requests: see telemetry/committer.py), and return a result per item. Returns only after
        the commit: a ``stored`` result is durable."""
        started = time.perf_counter()
        now_ms = int(self._clock() * 1000)
        span = tracer().start_span("ingest.verify", attributes={"readings": len(items)})
        if len(items) >= _THREAD_MIN_BATCH:
            # libsecp256k1 releases the GIL, so checking a batch in a worker thread lets one
            # request's signature recovery overlap another's parsing and storing, and keeps the
            # event loop free to answer probes during a large batch.
            results, rows, row_index = await asyncio.to_thread(self._check_all, items, now_ms)
        else:
            results, rows, row_index = self._check_all(items, now_ms)
        span.end()
        m = metrics()
        m.verification_duration.observe(time.perf_counter() - started)
        if rows:
            with tracer().start_as_current_span("ingest.commit", attributes={"rows": len(rows)}):
                stored = await self.committer.submit(rows)
            for index, row, outcome in zip(row_index, rows, stored, strict=True):
                results[index] = _result(index, row, outcome.outcome, outcome.reading_id)
            if self.on_stored is not None:
                new = [o.reading_id for o in stored if o.outcome is Outcome.STORED]
                if new:
                    self.on_stored(max(i for i in new if i is not None))
        done = [r for r in results if r is not None]
        _count(m, transport, done)
        m.ack_latency.labels(transport=transport).observe(time.perf_counter() - started)
        return done

    def _check_all(
        self, items: Sequence[Any], now_ms: int
    ) -> tuple[list[IngestResult | None], list[NewReading], list[int]]:
        """Steps 1-3 for every item: the rejected ones get their result, the others a row."""
        results: list[IngestResult | None] = [None] * len(items)
        rows: list[NewReading] = []
        row_index: list[int] = []
        for index, item in enumerate(items):
            try:
                reading, signature, digest = self._check(item, now_ms)
            except _Refused as refused:
                results[index] = IngestResult(
                    index,
                    "rejected",
                    device=_peek(item, "device"),
                    seq=_peek_int(item, "seq"),
                    error=refused.rejection,
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
        reading = self._parse(item)
        if reading.seq < 1 or reading.seq >= INT63_LIMIT:
            raise _invalid("seq", f"seq must be in [1, 2^63-1], got {reading.seq}")
        if reading.timestamp >= INT63_LIMIT:
            raise _invalid("timestamp", "timestamp must be below 2^63 ms")
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
        try:
            if "senml" in item:
                return self._parse_senml(item)
            reading = Reading.from_json(item)
        except InvalidReadingError as exc:
            raise _invalid(exc.field, exc.reason) from None
        try:
            schema = self.schemas.by_id(reading.schema)
        except UnknownSchemaError as exc:
            raise _invalid("schema", str(exc), "unknown-schema") from None
        if len(reading.values) != len(schema.metrics):
            raise _invalid(
                "values",
                f"{schema.name} has {len(schema.metrics)} values "
                f"({', '.join(m.name for m in schema.metrics)}), got {len(reading.values)}",
            )
        return reading

    def _parse_senml(self, item: Mapping[str, Any]) -> Reading:
        schema_key = item.get("schema")
        if not isinstance(schema_key, str):
            raise _invalid("schema", "expected a schema name or 0x-hex id")
        try:
            schema = self.schemas.resolve(schema_key)
        except UnknownSchemaError as exc:
            raise _invalid("schema", str(exc), "unknown-schema") from None
        records = item["senml"]
        if not isinstance(records, list):
            raise _invalid("senml", "expected a list of SenML records")
        by_name: dict[str, Any] = {}
        for i, record in enumerate(records):
            if not isinstance(record, Mapping) or not isinstance(record.get("n"), str):
                raise _invalid(f"senml[{i}]", 'expected {"n": name, "v": value}')
            name = record["n"]
            if name in by_name:
                raise _invalid(f"senml[{i}].n", f"{name} appears twice")
            by_name[name] = record
        values: list[int] = []
        for metric in schema.metrics:
            record = by_name.pop(metric.name, None)
            if record is None:
                raise _invalid("senml", f"{schema.name} needs {metric.name} ({metric.unit})")
            unit = record.get("u")
            if unit is not None and unit != metric.unit:
                raise _invalid("senml", f"{metric.name} is in {metric.unit}, not {unit!r}")
            value = record.get("v")
            if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
                raise _invalid("senml", f"{metric.name}: v must be a number")
            try:
                values.append(metric.to_fixed(value))
            except ValueScaleError as exc:
                raise _invalid("senml", str(exc)) from None
        if by_name:
            raise _invalid("senml", f"{schema.name} has no metric {', '.join(sorted(by_name))}")
        raw = {k: item.get(k) for k in ("device", "seq", "timestamp")}
        raw["schema"] = schema.id_hex
        raw["values"] = values
        return Reading.from_json(raw)


def _signature(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _invalid("signature", "expected 0x-hex of 65 bytes (r, s, v)", "invalid-signature")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        signature = bytes.fromhex(text)
    except ValueError:
        raise _invalid("signature", "not hex", "invalid-signature") from None
    if len(signature) != 65:
        raise _invalid(
            "signature", f"expected 65 bytes (r, s, v), got {len(signature)}", "invalid-signature"
        )
    return signature


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
    value = item.get(key) if isinstance(item, Mapping) else None
    return value if isinstance(value, str) else None


def _peek_int(item: Any, key: str) -> int | None:
    value = item.get(key) if isinstance(item, Mapping) else None
    return value if type(value) is int else None
