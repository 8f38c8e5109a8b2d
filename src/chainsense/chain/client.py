"""Async chain client over web3.py.

What it adds to a bare ``AsyncWeb3``:

- every RPC request has a timeout, and read requests are retried with exponential backoff; when the
  endpoint stays down, a :class:`~chainsense.errors.ChainUnavailableError` names it;
- a circuit breaker (:mod:`chainsense.chain.breaker`): after repeated failed calls every call fails
  at once until a probe finds the node back, so an outage costs callers no waiting;
  :meth:`ChainClient.probe` is the time-bounded head check of ``/readyz`` and the metrics;
- :meth:`ChainClient.wait_for_receipt` polls from 5 ms up to 250 ms instead of web3's fixed 0.1 s
  floor, and waits for a number of confirmations;
- :class:`Signer` signs locally and hands out nonces under a lock, so concurrent sends from one
  account never collide; the nonce is re-read from the chain after a failed send; processes of
  one host that sign with the same key (``serve --workers``) take turns through a lock file;
- reverts raise :class:`~chainsense.errors.TransactionRevertedError` with the decoded custom error
  and its arguments (``ReadingAnchorRootAlreadyAnchored(root=0x…)``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.providers.rpc import AsyncHTTPProvider
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import BlockIdentifier, Nonce, TxParams, TxReceipt

from chainsense.chain.breaker import CircuitBreaker
from chainsense.chain.errors import ErrorDecoder
from chainsense.contracts import load_artifact
from chainsense.errors import (
    ChainTimeoutError,
    ChainUnavailableError,
    TransactionRejectedError,
    TransactionRevertedError,
)
from chainsense.redact import redact_url, scrub, url_secrets

log = logging.getLogger(__name__)

__all__ = ["ChainClient", "RpcFailure", "SentTransaction", "Signer"]

T = TypeVar("T")

_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class Transactable(Protocol):
    """A contract function or constructor call that can become a transaction."""

    async def build_transaction(self, transaction: TxParams | None = None) -> TxParams: ...


def _label(fn: Transactable) -> str:
    return str(getattr(fn, "fn_name", "constructor"))


@dataclass(frozen=True)
class RpcFailure:
    """A request of a JSON-RPC batch that the node answered with an error."""

    message: str
    data: Any = None


#: HTTP statuses with which nodes and gateways refuse a batch as too large (413) or malformed
#: for them (400: some gateways take no batches). Other statuses are failures of the node.
_BATCH_REFUSED_STATUSES = (400, 413)


def _failure(answer: Any) -> RpcFailure | None:
    error = answer.get("error") if isinstance(answer, dict) else None
    if error is None:
        return None
    if isinstance(error, dict):
        return RpcFailure(str(error.get("message", error)), error.get("data"))
    return RpcFailure(str(error))


class ChainClient:
    """One JSON-RPC endpoint. Create it with :meth:`connect`; close it with :meth:`close`."""

    def __init__(
        self,
        rpc_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.25,
        decoder: ErrorDecoder | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._url = rpc_url
        self.breaker = breaker or CircuitBreaker()
        self.timeout = timeout
        provider = AsyncHTTPProvider(
            rpc_url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=_NETWORK_ERRORS, retries=retries + 1, backoff_factor=backoff
            ),
            # web3 asks eth_chainId before every call and estimate it validates: once is enough
            cache_allowed_requests=True,
        )
        self.w3 = AsyncWeb3(provider)
        self.decoder = decoder or ErrorDecoder()
        self._chain_id: int | None = None
        self._batch_limit: int | None = None  # learned from a node that refused a batch

    @classmethod
    async def connect(cls, rpc_url: str, **kwargs: Any) -> ChainClient:
        """Create a client and check that the endpoint answers (reads its chain id)."""
        client = cls(rpc_url, **kwargs)
        try:
            await client.chain_id()
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def rpc_url(self) -> str:
        """The endpoint, safe to show: credentials, query values and key segments are ``***``
        (:func:`chainsense.redact.redact_url`). The client keeps the real URL to itself."""
        return redact_url(self._url)

    async def close(self) -> None:
        await self.w3.provider.disconnect()

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plain reads ---------------------------------------------------------------------------

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = await self.rpc(lambda: self.w3.eth.chain_id)
        return self._chain_id

    async def block_number(self) -> int:
        return await self.rpc(lambda: self.w3.eth.block_number)

    async def get_code(self, address: str) -> bytes:
        checksum = AsyncWeb3.to_checksum_address(address)
        return bytes(await self.rpc(lambda: self.w3.eth.get_code(checksum)))

    def contract(self, name: str, address: str) -> AsyncContract:
        """A contract handle from the shipped artifact ``name`` at ``address``."""
        return self.w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(address), abi=load_artifact(name).abi
        )

    async def call(self, fn: AsyncContractFunction, *, block: BlockIdentifier = "latest") -> Any:
        """Call a view function; a revert raises TransactionRevertedError with the decoded error."""
        return await self.rpc(lambda: fn.call(block_identifier=block), function=_label(fn))

    # --- the guard every request goes through -----------------------------------------------

    async def rpc(self, request: Callable[[], Awaitable[T]], *, function: str | None = None) -> T:
        """Run one web3 request, mapping network failures and reverts to ChainSense errors.
        While the circuit is open it fails at once, without a request."""
        refused = self.breaker.before()
        if refused is not None:
            raise ChainUnavailableError(self._url, str(refused))
        try:
            result = await request()
        except ContractLogicError as exc:
            self.breaker.success()  # the node answered
            raise self._reverted(exc, function=function) from exc
        except _NETWORK_ERRORS as exc:
            self.breaker.failure(_describe(exc))
            raise ChainUnavailableError(self._url, _describe(exc)) from exc
        except Exception:
            self.breaker.success()  # the node answered, with an error (TransactionNotFound, ...)
            raise
        except BaseException:
            self.breaker.release()  # cancelled: no verdict on the node
            raise
        self.breaker.success()
        return result

    async def batch(self, requests: list[tuple[str, list[Any]]]) -> list[Any]:
        """Send several JSON-RPC requests in one round trip (a JSON-RPC batch); return each
        one's result, or an :class:`RpcFailure` for a request the node answered with an error.
        A slow or distant node costs one delay per batch instead of one per request.

        Nodes cap batches (geth answers a batch over 1,000 calls with one "batch too large"
        error, hosted gateways cap lower or answer HTTP 413, some take no batches at all). A
        refused batch is sent again in halves, down to single requests, and the size that went
        through is kept as this client's limit, so a capped node costs more round trips instead
        of stopping the anchorer."""
        results: list[Any] = []
        start = 0
        while start < len(requests):
            size = len(requests) - start
            if self._batch_limit is not None:
                size = min(size, self._batch_limit)
            chunk = requests[start : start + size]
            if size == 1:
                results.append(await self._send_one(*chunk[0]))
                start += 1
                continue
            answers = await self._send_batch(chunk)
            if isinstance(answers, str):
                smaller = max(1, size // 2)
                log.info(
                    "the node at %s refused a JSON-RPC batch of %d requests (%s); sending at "
                    "most %d per batch from now on",
                    self.rpc_url, size, answers, smaller,
                )  # fmt: skip
                self._batch_limit = smaller
                continue
            results.extend(answers)
            start += size
        return results

    async def _send_batch(self, chunk: list[tuple[str, list[Any]]]) -> list[Any] | str:
        """The chunk's answers in order, or why the node refused the batch as a whole."""
        provider = self.w3.provider
        calls = cast(list[tuple[Any, Any]], chunk)

        async def post() -> Any:
            try:
                return await provider.make_batch_request(calls)
            except aiohttp.ClientResponseError as exc:
                if exc.status in _BATCH_REFUSED_STATUSES:  # the node answered: too large
                    return f"HTTP {exc.status} {exc.message}"
                raise

        answers: Any = await self.rpc(post)
        if isinstance(answers, str):
            return answers
        if not isinstance(answers, list):  # one error object for the whole batch
            error = answers.get("error") if isinstance(answers, dict) else answers
            return str(error.get("message", error) if isinstance(error, dict) else error)
        if len(answers) != len(chunk):
            return f"{len(answers)} answers to {len(chunk)} requests"
        failures = [_failure(answer) for answer in answers]
        if all(f is not None and "batch" in f.message.lower() for f in failures):
            return str(failures[0].message if failures[0] is not None else "")
        return [
            failure if failure is not None else answer.get("result")
            for answer, failure in zip(answers, failures, strict=True)
        ]

    async def _send_one(self, method: str, params: list[Any]) -> Any:
        """One request outside any batch: its result, or an RpcFailure."""
        provider = self.w3.provider
        answer: Any = await self.rpc(lambda: provider.make_request(cast(Any, method), params))
        failure = _failure(answer)
        return failure if failure is not None else answer.get("result")

    async def probe(self, timeout: float) -> int:
        """The head block within ``timeout`` seconds, else ChainUnavailableError; a probe that
        runs out of time counts as a failed call (``/readyz`` and the metrics sampler use it)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.block_number()
        except TimeoutError:
            reason = f"no answer within {timeout:g} s"
            self.breaker.failure(reason)
            raise ChainUnavailableError(self._url, reason) from None

    def _reverted(
        self, exc: ContractLogicError, *, function: str | None, tx_hash: str | None = None
    ) -> TransactionRevertedError:
        data = exc.data if isinstance(exc.data, str) else None
        name, args = self.decoder.decode(data)
        if name is None and data is None and exc.message:
            name, args = "Error", {"message": str(exc.message)}
        return TransactionRevertedError(
            error_name=name, error_args=args, data=data, tx_hash=tx_hash, function=function
        )

    # --- receipts ----------------------------------------------------------------------------

    async def wait_for_receipts(
        self, tx_hashes: list[str], *, timeout: float = 120.0
    ) -> dict[str, dict[str, Any]]:
        """Poll for several receipts at once (one batch request per poll, 5 ms doubling to
        250 ms) until all are mined or ``timeout``; return the raw receipts by hash (those not
        mined in time are missing)."""
        waiting = list(dict.fromkeys(tx_hashes))
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        delay = 0.005
        while waiting:
            answers = await self.batch([("eth_getTransactionReceipt", [h]) for h in waiting])
            for tx_hash, answer in zip(waiting, answers, strict=True):
                if isinstance(answer, dict):
                    found[tx_hash] = answer
            waiting = [h for h in waiting if h not in found]
            if not waiting or time.monotonic() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        return found

    async def wait_for_receipt(
        self, tx_hash: str | bytes, *, timeout: float = 120.0, confirmations: int = 1
    ) -> TxReceipt:
        """Poll for the receipt (5 ms, doubling to 250 ms) and for ``confirmations`` blocks."""
        tx = HexBytes(tx_hash)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                receipt = await self.rpc(lambda: self.w3.eth.get_transaction_receipt(tx))
                if confirmations <= 1:
                    return receipt
                head = await self.block_number()
                if head - receipt["blockNumber"] + 1 >= confirmations:
                    return receipt
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                raise ChainTimeoutError(tx.to_0x_hex(), timeout)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def revert_reason(self, receipt: TxReceipt, tx: TxParams) -> TransactionRevertedError:
        """Replay a failed transaction at its block to recover the revert data."""
        replay: TxParams = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}  # type: ignore[assignment]
        tx_hash = receipt["transactionHash"].to_0x_hex()
        try:
            await self.w3.eth.call(replay, block_identifier=receipt["blockNumber"])
        except ContractLogicError as exc:
            return self._reverted(exc, function=None, tx_hash=tx_hash)
        except (Web3RPCError, *_NETWORK_ERRORS):
            pass
        return TransactionRevertedError(error_name=None, tx_hash=tx_hash)


@dataclass(frozen=True)
class SentTransaction:
    """A transaction :meth:`Signer.send_many` handed to the node."""

    tx_hash: str
    """0x-hex."""
    nonce: int
    tx: TxParams


#: Sends retried when the node refuses a nonce another sender of the same key used first.
_STALE_NONCE_RETRIES = 3


def _stale_nonce(refusal: str) -> bool:
    text = refusal.lower()
    return "nonce too low" in text or "replacement transaction underpriced" in text


@asynccontextmanager
async def _host_lock(path: Path) -> AsyncIterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing). Taken without blocking, in
    short polls, so a cancelled waiter never leaves a thread that takes the lock later; the
    kernel drops it when its holder dies, even by ``kill -9``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(pause)
                pause = min(0.02, pause * 2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Signer:
    """A local key that sends transactions through a :class:`ChainClient`.

    Nonces are handed out under a lock, so any number of concurrent :meth:`send` calls from one
    signer get consecutive nonces. After a failed send the nonce is re-read from the chain; a
    send refused because another sender of the same key took the nonce is sent again.

    With ``host_lock`` (a file path), every process of this host whose signer of the key names
    the same file takes turns: the nonce is read from the chain (``pending``) and the
    transaction sent while holding the file's lock, so the ``serve --workers`` workers, which
    all send registrations with the operator key, never take each other's nonce (one more round
    trip per send). Without it, such a collision is only retried a few times, which many
    concurrent registrations through several workers outran (409 ``nonce too low``).
    """

    def __init__(
        self,
        client: ChainClient,
        private_key: str | bytes,
        *,
        fee_ttl: float = 30.0,
        host_lock: Path | None = None,
    ) -> None:
        self.client = client
        self.account: LocalAccount = Account.from_key(private_key)
        self.fee_ttl = fee_ttl
        """Seconds a fee reading is reused by :meth:`send_many`."""
        self.host_lock = host_lock
        self._lock = asyncio.Lock()
        self._next_nonce: int | None = None
        self._fees: dict[str, int] | None = None
        self._fees_at = 0.0

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    async def reset_nonce(self) -> None:
        """Forget the cached nonce (after a reorg dropped this signer's transactions)."""
        async with self._lock:
            self._next_nonce = None

    async def fees(self) -> dict[str, int]:
        """Fee fields for the next transactions, read at most every ``fee_ttl`` seconds (one
        round trip: the head's base fee and the node's tip). The max fee is twice the base fee
        plus the tip, so a reading stays good while the base fee doubles; a chain without
        EIP-1559 gets a legacy ``gasPrice``."""
        now = time.monotonic()
        if self._fees is None or now - self._fees_at > self.fee_ttl:
            block, tip = await self.client.batch(
                [("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", [])]
            )
            base = block.get("baseFeePerGas") if isinstance(block, dict) else None
            if base is None or not isinstance(tip, str):
                price = await self.client.rpc(lambda: self.client.w3.eth.gas_price)
                self._fees = {"gasPrice": int(price)}
            else:
                priority = int(tip, 16)
                self._fees = {
                    "maxFeePerGas": 2 * int(base, 16) + priority,
                    "maxPriorityFeePerGas": priority,
                }
            self._fees_at = now
        return dict(self._fees)

    def forget_fees(self) -> None:
        """Read the fees again before the next :meth:`send_many` (one was refused as too low)."""
        self._fees = None

    async def send_many(
        self, fns: list[Transactable], *, gas: int
    ) -> list[SentTransaction | TransactionRejectedError]:
        """Sign ``fns`` with consecutive nonces and send them all in one round trip, without
        waiting for any receipt (several transactions in flight).

        Nothing is estimated: the caller gives the gas limit, the fees come from :meth:`fees`
        and the nonce is kept here. So a call that reverts is mined as a failed transaction
        (status 0), not refused before sending. One result per function, in order: the sent
        transaction, or why the node refused it. After a refusal the nonce is read from the chain
        again, so the next transaction fills the gap the refused one left (the ones after it
        wait in the node's pool until then); a refusal because another sender of the key took
        the nonce is sent again with the chain's nonce (a few times at most)."""
        results: list[SentTransaction | TransactionRejectedError | None] = [None] * len(fns)
        todo = list(range(len(fns)))
        for attempt in range(_STALE_NONCE_RETRIES + 1):
            fees = await self.fees()
            chain_id = await self.client.chain_id()
            async with self._lock, self._turn():
                if self._next_nonce is None:
                    self._next_nonce = await self._chain_nonce()
                first = self._next_nonce
                signed: list[tuple[int, str, TxParams, bytes]] = []
                try:
                    for offset, index in enumerate(todo):
                        fn = fns[index]
                        params: TxParams = {
                            "from": self.address,
                            "chainId": chain_id,
                            "nonce": Nonce(first + offset),
                            "gas": gas,
                            **fees,  # type: ignore[typeddict-item]
                        }
                        tx = await fn.build_transaction(params)
                        raw = self.account.sign_transaction(cast(dict[str, Any], tx))
                        signed.append((index, raw.hash.to_0x_hex(), tx, bytes(raw.raw_transaction)))
                    answers = await self.client.batch(
                        [("eth_sendRawTransaction", ["0x" + raw.hex()]) for *_, raw in signed]
                    )
                except BaseException:
                    self._next_nonce = None  # unknown which were sent: ask the chain next time
                    raise
                retry: list[int] = []
                last_refusal = ""
                for (index, tx_hash, tx, _), answer, offset in zip(
                    signed, answers, range(len(signed)), strict=True
                ):
                    if not isinstance(answer, RpcFailure):
                        results[index] = SentTransaction(tx_hash, first + offset, tx)
                        continue
                    why = scrub(answer.message, url_secrets(self.client._url))
                    last_refusal = why
                    if attempt < _STALE_NONCE_RETRIES and _stale_nonce(why):
                        retry.append(index)  # nothing of ours used that nonce: send it again
                    else:
                        results[index] = TransactionRejectedError(
                            f"{_label(fns[index])}: the node refused it: {why}"
                        )
                if not last_refusal:
                    self._next_nonce = first + len(signed)
                else:
                    # the chain says which nonce comes next: after a refusal that left a gap, the
                    # next transaction fills it and the ones after it are mined
                    self._next_nonce = None
            if "fee" in last_refusal.lower() and "base" in last_refusal.lower():
                self.forget_fees()
            if not retry:
                break
            log.debug("nonce taken by another sender of the key; %d sent again", len(retry))
            todo = retry
        return [r for r in results if r is not None]

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """This host's turn to send with the key (see ``host_lock``); the nonce cached here is
        then stale, as another process may have sent since."""
        if self.host_lock is None:
            yield
            return
        async with _host_lock(self.host_lock):
            self._next_nonce = None
            yield

    async def _chain_nonce(self) -> int:
        return await self.client.rpc(
            lambda: self.client.w3.eth.get_transaction_count(self.address, "pending")
        )

    @asynccontextmanager
    async def _nonce(self) -> AsyncIterator[int]:
        async with self._lock, self._turn():
            if self._next_nonce is None:
                self._next_nonce = await self._chain_nonce()
            nonce = self._next_nonce
            try:
                yield nonce
            except BaseException:
                self._next_nonce = None  # unknown whether it was used: ask the chain next time
                raise
            self._next_nonce = nonce + 1

    async def send(self, fn: Transactable, *, gas: int | None = None) -> str:
        """Estimate, sign and send ``fn``; return the transaction hash (0x-hex).

        Gas estimation runs the call first, so a call that would revert raises
        TransactionRevertedError here, before anything is sent.
        """
        tx_hash, _ = await self._send(fn, gas=gas)
        return tx_hash

    async def _send(self, fn: Transactable, *, gas: int | None) -> tuple[str, TxParams]:
        """Send once; when the node says the cached nonce was taken (another process signing
        with the same key, e.g. the operator key in every ``serve --workers`` worker), nothing
        of ours was sent: ask the chain for the nonce and send again (a few times at most)."""
        for attempt in range(_STALE_NONCE_RETRIES + 1):
            try:
                return await self._send_once(fn, gas=gas)
            except TransactionRejectedError as exc:
                if attempt == _STALE_NONCE_RETRIES or not _stale_nonce(str(exc)):
                    raise
                log.debug("%s: nonce taken by another sender of the key; sent again", _label(fn))
        raise AssertionError("unreachable")

    async def _send_once(self, fn: Transactable, *, gas: int | None) -> tuple[str, TxParams]:
        params: TxParams = {"from": self.address, "chainId": await self.client.chain_id()}
        if gas is not None:
            params["gas"] = gas
        async with self._nonce() as nonce:
            params["nonce"] = Nonce(nonce)
            tx = await self.client.rpc(lambda: fn.build_transaction(params), function=_label(fn))
            signed = self.account.sign_transaction(cast(dict[str, Any], tx))
            try:
                tx_hash = await self.client.rpc(
                    lambda: self.client.w3.eth.send_raw_transaction(signed.raw_transaction),
                    function=_label(fn),
                )
            except Web3RPCError as exc:
                why = scrub(str(exc), url_secrets(self.client._url))
                raise TransactionRejectedError(f"{_label(fn)}: the node refused it: {why}") from exc
        return tx_hash.to_0x_hex(), tx

    async def transact(
        self,
        fn: Transactable,
        *,
        gas: int | None = None,
        timeout: float = 120.0,
        confirmations: int = 1,
    ) -> TxReceipt:
        """Send ``fn`` and wait for its receipt; a reverted transaction raises with the decoded
        custom error."""
        tx_hash, tx = await self._send(fn, gas=gas)
        receipt = await self.client.wait_for_receipt(
            tx_hash, timeout=timeout, confirmations=confirmations
        )
        if receipt["status"] != 1:
            raise await self.client.revert_reason(receipt, tx)
        return receipt


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"
