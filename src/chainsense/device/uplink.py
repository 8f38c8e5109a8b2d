"""Delivering buffered readings to the platform: batches, retries, and settling each answer.

:meth:`Uplink.flush` sends the buffer in seq order, in batches (``POST /v1/readings`` with
``{"readings": [...]}``), and settles each reading by the platform's answer:

- ``stored`` or ``duplicate`` (an identical replay: the platform already has it, same id): dropped
  from the buffer. A crash after the platform's commit and before the buffer's delete therefore
  resends the reading and gets ``duplicate``, never a second copy;
- ``rejected`` with a 4xx problem (bad signature, unknown or revoked device, seq not increasing,
  ...): moved to the buffer's rejected table with the problem, so it never blocks later readings;
- no answer (connection refused, timeout) or a 5xx, 408, 425 or 429: retried with exponential
  backoff, a bounded number of times per flush; then the flush stops and the readings stay
  buffered, in order, with their seq and device timestamp, for the next flush.

Flushing needs no key (the readings are signed already), so a ``flush`` from cron needs no
passphrase.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from chainsense.device.buffer import BufferedReading, Domain, OfflineBuffer, RejectedReading
from chainsense.device.errors import PlatformResponseError, PlatformUnreachableError

__all__ = ["FlushReport", "Uplink"]

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses that mean "try again later", for a whole request or for one reading."""


@dataclass(frozen=True)
class FlushReport:
    """What one flush did."""

    stored: int = 0
    """Readings the platform stored now."""
    duplicates: int = 0
    """Readings the platform already had (identical replays); dropped from the buffer too."""
    rejected: tuple[RejectedReading, ...] = ()
    """Readings the platform refused in this flush, now in the buffer's rejected table."""
    pending: int = 0
    """Readings still buffered after the flush."""
    error: str | None = None
    """Why the flush stopped before the buffer was empty, or None."""
    unreachable: bool = False
    """True when the flush stopped because the platform did not answer (after retries)."""

    @property
    def delivered(self) -> int:
        """Readings the platform now holds: stored plus duplicates."""
        return self.stored + self.duplicates

    @property
    def complete(self) -> bool:
        """True when nothing is left in the queue."""
        return self.pending == 0 and self.error is None


@dataclass
class _Tally:
    stored: int = 0
    duplicates: int = 0
    rejected: list[RejectedReading] = field(default_factory=list)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Uplink:
    """Sends one buffer's readings to one platform. Use as ``async with``, or call
    :meth:`aclose`.

    ``base_url`` is the platform's API root (``http://127.0.0.1:8000``). ``http`` is an
    ``httpx.AsyncClient`` to use (the caller then closes it); by default the uplink makes its
    own with ``timeout``. Each request is tried ``1 + retries`` times, waiting
    ``backoff * 2**attempt`` seconds (with jitter, at most ``max_backoff``) in between.
    """

    def __init__(
        self,
        base_url: str,
        buffer: OfflineBuffer,
        *,
        http: httpx.AsyncClient | None = None,
        batch_size: int = 500,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be in [1, 1000] (the API takes at most 1000)")
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")
        self.base_url = base_url.rstrip("/")
        self.buffer = buffer
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._lock = asyncio.Lock()
        self._domain_checked = False

    async def __aenter__(self) -> Uplink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this uplink made it (the buffer stays open: it is yours)."""
        if self._own_http:
            await self._http.aclose()

    # --- the domain ----------------------------------------------------------------------------

    async def fetch_domain(self) -> Domain:
        """Ask the platform (``GET /v1/chain``) for its chain id and DeviceRegistry address.

        Raises :class:`PlatformUnreachableError` after the retries.
        """
        url = f"{self.base_url}/v1/chain"
        response = await self.request("GET", url)
        try:
            body = response.json()
            return Domain(
                int(body["chain_id"]), str(body["contracts"]["DeviceRegistry"]["address"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformResponseError(
                url, response.status_code, f"unexpected /v1/chain body ({exc!r})"
            ) from None

    async def domain(self) -> Domain:
        """The EIP-712 domain to sign in: the buffer's cached one, else the platform's (which is
        then cached). Raises :class:`PlatformUnreachableError` when none is cached and the
        platform does not answer."""
        cached = await asyncio.to_thread(lambda: self.buffer.domain)
        if cached is not None:
            return cached
        try:
            fetched = await self.fetch_domain()
        except PlatformUnreachableError as exc:
            raise PlatformUnreachableError(
                exc.url,
                f"{exc.reason} (a device learns its signing domain, the chain id and "
                "DeviceRegistry address, on its first contact; nothing was recorded)",
            ) from None
        await asyncio.to_thread(self.buffer.set_domain, fetched)
        self._domain_checked = True
        return fetched

    async def _check_domain(self) -> None:
        """Once per uplink, check that pending readings are signed in the platform's domain:
        readings signed for another chain or registry would all be refused."""
        if self._domain_checked:
            return
        current = await self.fetch_domain()
        buffer = self.buffer
        if await asyncio.to_thread(lambda: buffer.domain) is None:
            await asyncio.to_thread(buffer.set_domain, current)
        elsewhere = await asyncio.to_thread(buffer.count_signed_elsewhere, current)
        if elsewhere:
            raise PlatformResponseError(
                self.base_url,
                200,
                f"{elsewhere} buffered readings were signed for another EIP-712 domain than the "
                f"platform's (chain {current.chain_id}, DeviceRegistry "
                f"{current.verifying_contract}); they stay buffered, unsent",
            )
        self._domain_checked = True

    # --- flushing ------------------------------------------------------------------------------

    async def flush(self) -> FlushReport:
        """Deliver buffered readings in seq order until the buffer is empty or the platform stops
        answering; see the module docstring for how each answer settles a reading."""
        async with self._lock:
            tally = _Tally()
            error: str | None = None
            unreachable = False
            try:
                await self._flush(tally)
            except PlatformUnreachableError as exc:
                error, unreachable = str(exc), True
            except PlatformResponseError as exc:
                error = str(exc)
            return FlushReport(
                stored=tally.stored,
                duplicates=tally.duplicates,
                rejected=tuple(tally.rejected),
                pending=await asyncio.to_thread(self.buffer.pending_count),
                error=error,
                unreachable=unreachable,
            )

    async def _flush(self, tally: _Tally) -> None:
        if await asyncio.to_thread(self.buffer.pending_count) == 0:
            return
        await self._check_domain()
        size = self.batch_size
        after = 0
        while True:
            batch = await asyncio.to_thread(self.buffer.pending, size, after=after)
            if not batch:
                return
            try:
                results = await self._post(batch)
            except PlatformResponseError as exc:
                if exc.status != 413:
                    raise
                if len(batch) > 1:
                    size = max(1, len(batch) // 2)  # the platform takes smaller batches
                    continue
                problem = exc.problem if isinstance(exc.problem, Mapping) else {}
                results = [{"status": "rejected", "error": {**problem, "status": 413}}]
            await self._settle(batch, results, tally)
            after = batch[-1].seq  # a reading kept for a transient refusal waits for next flush

    async def _post(self, batch: Sequence[BufferedReading]) -> list[Mapping[str, Any]]:
        url = f"{self.base_url}/v1/readings"
        response = await self.request(
            "POST", url, json={"readings": [entry.to_json() for entry in batch]}
        )
        try:
            results = response.json()["results"]
            if not isinstance(results, list) or len(results) != len(batch):
                raise ValueError(f"{len(batch)} readings sent, results for {len(results)}")
            by_index: dict[int, Mapping[str, Any]] = {int(r["index"]): r for r in results}
            ordered = [by_index[i] for i in range(len(batch))]
            for entry, result in zip(batch, ordered, strict=True):
                if result.get("seq") not in (None, entry.seq):
                    raise ValueError(f"the result for seq {entry.seq} names {result['seq']}")
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformResponseError(
                url, response.status_code, f"unexpected batch answer ({exc})"
            ) from None
        return ordered

    async def _settle(
        self,
        batch: Sequence[BufferedReading],
        results: Sequence[Mapping[str, Any]],
        tally: _Tally,
    ) -> None:
        """Apply one batch's results to the buffer, in one transaction."""
        acknowledged: list[int] = []
        rejected: list[tuple[int, int, Mapping[str, Any]]] = []
        for entry, result in zip(batch, results, strict=True):
            status = result.get("status")
            if status == "stored":
                tally.stored += 1
                acknowledged.append(entry.seq)
            elif status == "duplicate":
                tally.duplicates += 1
                acknowledged.append(entry.seq)
            elif status == "rejected":
                error = result.get("error")
                problem: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
                code = problem.get("status")
                code = code if type(code) is int else 422
                if 400 <= code < 500 and code not in RETRY_STATUSES:
                    rejected.append((entry.seq, code, problem))
                    tally.rejected.append(RejectedReading(entry, code, problem, time.time()))
            # Anything else (a transient refusal) stays pending for the next flush.
        await asyncio.to_thread(self.buffer.settle, acknowledged=acknowledged, rejected=rejected)

    # --- HTTP ----------------------------------------------------------------------------------

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on no answer and on :data:`RETRY_STATUSES`. Returns the 2xx
        response; raises :class:`PlatformUnreachableError` after the last retry and
        :class:`PlatformResponseError` for any other status."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, url, **kwargs)
                if response.status_code in RETRY_STATUSES:
                    raise _Retryable(
                        f"{response.status_code} {problem_text(response)}",
                        _retry_after(response),
                    )
            except (httpx.TransportError, _Retryable) as exc:
                reason = exc.reason if isinstance(exc, _Retryable) else _transport_reason(exc)
                if attempt >= self.retries:
                    raise PlatformUnreachableError(self.base_url, reason) from None
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                delay *= random.uniform(0.5, 1.0)  # jitter, so a fleet does not retry in step
                if isinstance(exc, _Retryable) and exc.retry_after is not None:
                    delay = min(self.max_backoff, max(delay, exc.retry_after))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if response.is_success:
                return response
            raise PlatformResponseError(
                url, response.status_code, problem_text(response), _json(response)
            )


def _json(response: httpx.Response) -> Any:
    with contextlib.suppress(ValueError):
        return response.json()
    return None


def problem_text(response: httpx.Response) -> str:
    """``title: detail`` of a problem+json body, or the reason phrase."""
    body = _json(response)
    if isinstance(body, Mapping):
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return response.reason_phrase or "error"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _transport_reason(exc: httpx.TransportError) -> str:
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text and text != name else name
