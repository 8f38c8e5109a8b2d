"""The batcher and anchorer: seal stored readings into Merkle batches, anchor each root on-chain.

Two loops run side by side, so a slow or absent chain never stops sealing (nor ingestion):

- the **sealer** takes the oldest readings no batch holds yet and seals them when ``max_size`` of
  them wait, or when the oldest has waited ``max_age`` seconds, whichever comes first. Sealing is
  one database transaction (the batch row, its root and every reading's ``batch_id``), so a crash
  leaves either a whole batch or none.
- the **anchorer** sends ``ReadingAnchor.anchor(root, count, batchRef)`` for every sealed batch,
  waits for ``confirmations`` blocks and records the transaction, block and block time. Before
  sending it asks the contract whether the root is already anchored (a crash after the send, or a
  second anchorer): then it only records the existing anchor. The contract refuses a duplicate
  root, so a root is anchored at most once, and a batch is recorded as anchored only once it is.

Slow nodes: the anchorer works in rounds of up to ``_ANCHOR_ROUND`` sealed batches, each a few
round trips to the node however many batches it holds (JSON-RPC batch requests: where the roots
stand, every transaction sent at once with locally kept nonces and cached fees, the receipts
polled together); the gas limit is estimated once. While ``behind_batches`` sealed batches wait,
only full batches are sealed, so a backlog makes fewer, bigger transactions.

After a ``kill -9`` at any point both loops simply resume: the database says what is sealed and
what is anchored, and the chain says what was sent.

Reorgs: every ``reorg_check_interval`` seconds (and at start) the anchorer re-reads the block of
each anchor in the last ``reorg_depth`` blocks. If the block hash changed and the root is no longer
anchored, the batch goes back to ``sealed`` and is anchored again; if the root was re-included in
another block, the record moves there. Proofs read the anchor from the batch record, so they follow.

RPC outages: failed attempts are counted and retried with exponential backoff (up to
``max_backoff``), which newly sealed batches do not cut short; :meth:`Anchorer.status` reports the
backlog so the lag is visible. A failure that waiting cannot fix (the anchorer account cannot pay
for gas) is not retried on a timer: the anchorer says so in ``blocked`` (``/v1/anchoring``, the
``chainsense_anchorer_blocked`` gauge, one ERROR log line) and sends nothing until the account's
balance grows. ``chain_ok`` is false while either loop fails, and ``last_error`` is cleared when
both work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_typing import HexStr
from hexbytes import HexBytes
from web3.contract import AsyncContract

from chainsense.chain.client import ChainClient, RpcFailure, Signer
from chainsense.errors import (
    ChainError,
    ChainSenseError,
    ChainTimeoutError,
    TransactionRejectedError,
)
from chainsense.observability.metrics import metrics
from chainsense.observability.tracing import anchor_span, seal_span, sealed
from chainsense.provenance.merkle import MerkleTree
from chainsense.store import Backlog, BatchRecord, BatchState, PendingReading, Store
from chainsense.store.leader import NotLeaderError

__all__ = ["AnchorPolicy", "Anchorer", "AnchorerStatus", "OnChainAnchor"]

log = logging.getLogger(__name__)

_THREAD_MIN_LEAVES = 4096  # build bigger trees in a worker thread
_ANCHOR_ROUND = 64  # sealed batches anchored in one round (their transactions all in flight)


@dataclass(frozen=True)
class AnchorPolicy:
    """When to seal and how to anchor. The defaults keep the anchoring delay around two seconds on
    a fast chain while a batch of 2000 readings costs ~26 gas per reading."""

    max_size: int = 2000
    max_age: float = 2.0
    confirmations: int = 1
    tx_timeout: float = 120.0
    poll_interval: float = 0.1
    reorg_depth: int = 64
    reorg_check_interval: float = 5.0
    max_backoff: float = 30.0
    behind_batches: int = 16
    """While this many sealed batches wait for their anchor, the age limit is set aside and only
    full batches (``max_size``) are sealed: a backlog makes fewer, bigger batches (fewer
    transactions to catch up with) instead of one more every ``max_age``."""

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (0.5 s doubling)."""
        return min(self.max_backoff, 0.5 * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True)
class OnChainAnchor:
    """Where a root sits on the chain, read back from the contract and the block."""

    tx_hash: bytes
    block_number: int
    block_hash: bytes
    block_time: int


@dataclass
class AnchorerStatus:
    """What the anchorer did last; ``Anchorer.status()`` adds the backlog."""

    running: bool = False
    chain_ok: bool = True
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    sealing_error: str | None = None
    """Why the last sealing attempt failed (None once one succeeds)."""
    blocked: str | None = None
    """A failure retrying cannot fix, and what would (None when none)."""
    batches_sealed: int = 0
    batches_anchored: int = 0
    reanchored: int = 0
    last_anchored_batch: int | None = None
    recent_delays: list[float] = field(default_factory=list)
    """Seconds from sealing to confirmed anchor, for the last few batches."""

    def expected_anchor_seconds(self, policy: AnchorPolicy) -> float:
        """How long a sealed batch typically takes to be anchored (median of recent ones)."""
        if not self.recent_delays:
            return 1.0 + policy.poll_interval
        ordered = sorted(self.recent_delays)
        return ordered[len(ordered) // 2]


class Anchorer:
    """Seals and anchors batches for one store and one ``ReadingAnchor`` contract.

    Run it with :meth:`run` (until cancelled), or drive it step by step in tests with
    :meth:`seal_due`, :meth:`anchor_sealed` and :meth:`check_anchors`.
    """

    def __init__(
        self,
        *,
        store: Store,
        client: ChainClient,
        signer: Signer,
        contract: str,
        policy: AnchorPolicy | None = None,
        crash_at: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.fence = fence
        """Called before each write (seal, send, record); raises when this process is no
        longer the anchorer's leader (store/leader.py)."""
        self.client = client
        self.signer = signer
        self.policy = policy or AnchorPolicy()
        self.contract: AsyncContract = client.contract("ReadingAnchor", contract)
        self.state = AnchorerStatus()
        self._crash_at = crash_at
        self._clock = clock
        self._wake = asyncio.Event()
        self._sealed = asyncio.Event()
        self._gas_limit: int | None = None
        self._fresh: set[int] = set()
        """Batches this process sealed in its current term and has not sent yet: nobody else
        can have anchored them (a leader's fence), so they need no check before sending."""
        self._round_head: int | None = None

    # --- running ---------------------------------------------------------------------------

    async def _fenced(self) -> None:
        if self.fence is not None:
            await self.fence()

    def notify(self) -> None:
        """New readings were stored: check the size trigger now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Seal and anchor until cancelled; chain failures are retried with backoff.

        Each call is a term of the anchorer's leadership: the signer's nonce is read again from
        the chain, since another process may have sent with the same key since this one last
        led (the first send would otherwise fail with a stale nonce)."""
        self.state.running = True
        self._fresh.clear()  # another process may have led, and sent, since the last term
        await self.signer.reset_nonce()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._seal_loop(), name="batch-sealer")
                tasks.create_task(self._anchor_loop(), name="batch-anchorer")
        finally:
            self.state.running = False

    async def _seal_loop(self) -> None:
        while True:
            try:
                if await self.seal_due():
                    self._sealed.set()
            except ChainSenseError as exc:  # the store is down: ingestion fails too; retry
                if self.state.sealing_error is None:
                    log.warning("sealing failed: %s", exc)
                self.state.sealing_error = str(exc)
                self.state.chain_ok = False
                self.state.last_error = f"sealing failed: {exc}"
                self.state.last_error_at = self._clock()
            else:
                if self.state.sealing_error is not None:
                    log.info("sealing recovered")
                    self.state.sealing_error = None
                    self._refresh_ok()
            await _wait(self._wake, self.policy.poll_interval)

    async def _anchor_loop(self) -> None:
        next_check = 0.0
        while True:
            try:
                if time.monotonic() >= next_check:
                    await self.check_anchors()
                    next_check = time.monotonic() + self.policy.reorg_check_interval
                await self.anchor_sealed()
                self._succeeded()
            except ChainSenseError as exc:
                delay = self._failed(exc)
                if _unfunded(exc):
                    await self._blocked_until_funded(exc)
                else:
                    # a failing chain waits its whole backoff: newly sealed batches do not cut it
                    await asyncio.sleep(delay)
                continue
            await _wait(self._sealed, self.policy.poll_interval)

    async def _blocked_until_funded(self, exc: ChainSenseError) -> None:
        """Send nothing until the anchorer account's balance grows (checked every
        ``max_backoff`` seconds, a read): retrying cannot fix an account without funds."""
        address = self.signer.address
        self.state.blocked = (
            f"the anchorer account {address} cannot pay for gas ({exc}); fund it: anchoring "
            "resumes when its balance grows"
        )
        metrics().anchorer_blocked.set(1)
        log.error("anchoring blocked: %s", self.state.blocked)
        start: int | None = None
        while True:
            try:
                balance = await self.client.rpc(lambda: self.client.w3.eth.get_balance(address))
            except ChainSenseError:
                balance = None
            if balance is not None:
                if start is not None and balance > start:
                    break
                start = balance if start is None else min(start, balance)
            await asyncio.sleep(self.policy.max_backoff)
        log.info("anchorer account %s funded (balance %d wei): anchoring again", address, balance)
        self.state.blocked = None
        metrics().anchorer_blocked.set(0)

    def _refresh_ok(self) -> None:
        """``chain_ok`` and ``last_error`` after one loop recovered: clear only if both work."""
        ok = self.state.sealing_error is None and self.state.consecutive_failures == 0
        self.state.chain_ok = ok
        if ok:
            self.state.last_error = None
        elif self.state.sealing_error is not None:
            self.state.last_error = f"sealing failed: {self.state.sealing_error}"

    def _succeeded(self) -> None:
        if self.state.consecutive_failures:
            log.info("anchoring recovered after %d failures", self.state.consecutive_failures)
        self.state.consecutive_failures = 0
        self._refresh_ok()

    def _failed(self, exc: BaseException) -> float:
        self.state.chain_ok = False
        self.state.consecutive_failures += 1
        self.state.last_error = str(exc)
        self.state.last_error_at = self._clock()
        delay = self.policy.retry_delay(self.state.consecutive_failures)
        log.warning(
            "anchoring failed (attempt %d, retry in %.1fs): %s",
            self.state.consecutive_failures,
            delay,
            exc,
        )
        return delay

    async def status(self) -> tuple[AnchorerStatus, Backlog]:
        return self.state, await self.store.batches.backlog()

    # --- sealing ---------------------------------------------------------------------------

    async def seal_due(self) -> list[BatchRecord]:
        """Seal every batch that is due now (full, or holding a reading older than max_age)."""
        sealed: list[BatchRecord] = []
        while True:
            count, oldest = await self.store.batches.waiting(limit=self.policy.max_size)
            if oldest is None or not self._due(count, oldest):
                return sealed
            if count < self.policy.max_size and await self._behind():
                return sealed  # due by age only, while anchoring is behind: wait for a full one
            pending = await self.store.batches.unbatched(limit=self.policy.max_size)
            if not pending:
                return sealed
            sealed.append(await self._seal(pending))

    async def seal_now(self) -> list[BatchRecord]:
        """Seal every waiting reading regardless of age (for tests and shutdown)."""
        sealed: list[BatchRecord] = []
        while pending := await self.store.batches.unbatched(limit=self.policy.max_size):
            sealed.append(await self._seal(pending))
        return sealed

    async def _behind(self) -> bool:
        limit = self.policy.behind_batches
        return len(await self.store.batches.find(state=BatchState.SEALED, limit=limit)) >= limit

    def _due(self, count: int, oldest: datetime) -> bool:
        if count >= self.policy.max_size:
            return True
        return (self._clock() - oldest).total_seconds() >= self.policy.max_age

    async def _seal(self, pending: list[PendingReading]) -> BatchRecord:
        with seal_span(p.id for p in pending) as span:
            values = [p.struct_hash for p in pending]
            if len(values) >= _THREAD_MIN_LEAVES:
                tree = await asyncio.to_thread(MerkleTree, values)
            else:
                tree = MerkleTree(values)
            await self._fenced()
            batch = await self.store.batches.seal(
                [p.id for p in pending],
                root=tree.root,
                chain_id=await self.client.chain_id(),
                contract=self.contract.address,
                sealed_at=self._clock(),
            )
            sealed(span, batch.id, len(values), tree.root)
        if self.state.running:
            self._fresh.add(batch.id)
        self.state.batches_sealed += 1
        metrics().batches_sealed.inc()
        log.info("sealed batch %d: %d readings, root 0x%s", batch.id, len(values), tree.root.hex())
        self._crashpoint("after-seal")
        return batch

    # --- anchoring -------------------------------------------------------------------------

    async def anchor_sealed(self) -> list[BatchRecord]:
        """Anchor the oldest sealed batches (up to ``_ANCHOR_ROUND`` of them in one round);
        return those now anchored. Records every failure on its batch, then raises the first.

        A round costs a few round trips to the node however many batches it holds, so a slow
        node does not slow anchoring down batch by batch: one batch request asks where every
        root stands (except batches this process sealed in its term and never sent); the
        unanchored ones are signed with consecutive nonces and sent in one
        batch request, all in flight at once; their receipts are polled together, and each
        receipt's ``RootAnchored`` log says where its root now sits."""
        batches = await self.store.batches.find(state=BatchState.SEALED, limit=_ANCHOR_ROUND)
        if not batches:
            return []
        self._round_head = None
        outcome: dict[int, BatchRecord | OnChainAnchor | BaseException | None] = {}
        check = [b for b in batches if b.id not in self._fresh]
        try:
            answers = await self._anchors_of([b.root for b in check]) if check else []
        except ChainSenseError as exc:
            answers = [exc] * len(check)
        known = {b.id: answer for b, answer in zip(check, answers, strict=True)}
        standing = [known.get(b.id, False) for b in batches]
        self._fresh.difference_update(b.id for b in batches)  # sent below: check them next time
        to_send: list[BatchRecord] = []
        found_elsewhere: list[BatchRecord] = []
        for batch, stand in zip(batches, standing, strict=True):
            if isinstance(stand, BaseException):
                outcome[batch.id] = stand
            elif stand:
                found_elsewhere.append(batch)  # sent before a crash, or by another anchorer
            else:
                to_send.append(batch)
        if found_elsewhere:
            located = await asyncio.gather(
                *(self.find_anchor(b.root) for b in found_elsewhere), return_exceptions=True
            )
            for batch, where in zip(found_elsewhere, located, strict=True):
                outcome[batch.id] = where
        if to_send:
            outcome.update(await self._send_round(to_send))

        anchored: list[BatchRecord] = []
        errors: list[ChainSenseError] = []
        for batch in batches:
            result = outcome.get(batch.id)
            if isinstance(result, OnChainAnchor):
                try:
                    result = await self._record(batch, result)
                except ChainSenseError as exc:
                    result = exc
            if isinstance(result, NotLeaderError):
                raise result  # not ours to record any more
            if isinstance(result, ChainSenseError):
                errors.append(result)
                await self.store.batches.record_failure(batch.id, str(result))
                metrics().anchor_transactions.labels(result="failed").inc()
            elif isinstance(result, BaseException):
                raise result
            elif isinstance(result, BatchRecord):
                anchored.append(result)
        if errors:
            raise errors[0]
        if len(batches) == _ANCHOR_ROUND and len(anchored) == len(batches):
            self._sealed.set()  # there may be more: go on without waiting
        return anchored

    async def _anchors_of(self, roots: list[bytes]) -> list[bool | ChainSenseError]:
        """Whether each root is anchored in this contract now (one batch request)."""
        calls = [
            (
                "eth_call",
                [{"to": self.contract.address, "data": self._encode("anchorOf", r)}, "latest"],
            )
            for r in roots
        ]
        answers = await self.client.batch(calls)
        out: list[bool | ChainSenseError] = []
        for answer in answers:
            if isinstance(answer, RpcFailure) or not isinstance(answer, str):
                out.append(ChainError(f"anchorOf failed: {answer}"))
                continue
            _count, block_number, _time = self.client.w3.codec.decode(
                ["(uint32,uint64,uint64)"], HexBytes(answer)
            )[0]
            out.append(int(block_number) != 0)
        return out

    def _encode(self, fn_name: str, *args: Any) -> str:
        return str(self.contract.encode_abi(fn_name, args=list(args)))

    async def _gas(self, fn: Any) -> int:
        """The gas limit of an anchor transaction: estimated once, with a margin. An anchor
        writes the same storage whatever its root, count and reference (only the calldata's zero
        bytes vary, by well under a thousand gas); unused gas is not paid for."""
        if self._gas_limit is None:
            estimate = await self.client.rpc(
                lambda: fn.estimate_gas({"from": self.signer.address}), function="anchor"
            )
            self._gas_limit = int(estimate * 1.25) + 10_000
        return self._gas_limit

    async def _send_round(
        self, batches: list[BatchRecord]
    ) -> dict[int, OnChainAnchor | BaseException | None]:
        """Send one anchor transaction per batch, all at once, and wait for their receipts."""
        fns = [
            self.contract.functions.anchor(b.root, b.reading_count, b.id.to_bytes(32, "big"))
            for b in batches
        ]
        outcome: dict[int, OnChainAnchor | BaseException | None] = {}
        try:
            gas = await self._gas(fns[0])
            await self._fenced()
            sent = await self.signer.send_many(list(fns), gas=gas)
        except NotLeaderError:
            raise
        except ChainSenseError as exc:  # maybe sent: the next round checks these roots first
            return {b.id: exc for b in batches}
        self._crashpoint("after-send")
        in_flight = {
            s.tx_hash: (b, s)
            for b, s in zip(batches, sent, strict=True)
            if not isinstance(s, BaseException)
        }
        for batch, result in zip(batches, sent, strict=True):
            if isinstance(result, BaseException):
                outcome[batch.id] = result
        try:
            receipts = await self.client.wait_for_receipts(
                list(in_flight), timeout=self.policy.tx_timeout
            )
        except ChainSenseError as exc:
            for batch, _ in in_flight.values():
                outcome[batch.id] = exc
            return outcome
        self._crashpoint("after-receipt")
        for tx_hash, (batch, sent_tx) in in_flight.items():
            receipt = receipts.get(tx_hash)
            if receipt is None:
                outcome[batch.id] = ChainTimeoutError(tx_hash, self.policy.tx_timeout)
                continue
            metrics().anchor_gas_used.inc(int(receipt.get("gasUsed", "0x0"), 16))
            found = self._anchor_in_receipt(receipt, batch.root)
            if found is not None:
                metrics().anchor_transactions.labels(result="anchored").inc()
                outcome[batch.id] = found
                continue
            # Reverted: the root may have been anchored by an earlier attempt whose transaction
            # was still pending when this one was sent.
            try:
                where = await self.find_anchor(batch.root)
                if where is None:
                    tx_receipt: Any = await self.client.rpc(
                        lambda h=tx_hash: self.client.w3.eth.get_transaction_receipt(h)  # type: ignore[misc]
                    )
                    raise await self.client.revert_reason(tx_receipt, sent_tx.tx)
            except ChainSenseError as exc:
                outcome[batch.id] = exc
                continue
            metrics().anchor_transactions.labels(result="already_anchored").inc()
            log.info("batch %d: root already anchored; recording that anchor", batch.id)
            outcome[batch.id] = where
        return outcome

    def _anchor_in_receipt(self, receipt: dict[str, Any], root: bytes) -> OnChainAnchor | None:
        """The anchor a successful receipt made for ``root`` (its ``RootAnchored`` log)."""
        if int(receipt.get("status", "0x0"), 16) != 1:
            return None
        topic = _0x(self.contract.events.RootAnchored().topic).lower()
        want = "0x" + root.hex()
        for entry in receipt.get("logs", []):
            topics = [str(t).lower() for t in entry.get("topics", [])]
            if (
                str(entry.get("address", "")).lower() == self.contract.address.lower()
                and len(topics) >= 2
                and topics[0] == topic
                and topics[1] == want
            ):
                data = bytes(HexBytes(entry["data"]))
                return OnChainAnchor(
                    tx_hash=bytes(HexBytes(receipt["transactionHash"])),
                    block_number=int(receipt["blockNumber"], 16),
                    block_hash=bytes(HexBytes(receipt["blockHash"])),
                    block_time=int.from_bytes(data[32:64], "big"),
                )
        return None

    async def _record(self, batch: BatchRecord, found: OnChainAnchor) -> BatchRecord | None:
        """Record ``batch`` as anchored where ``found`` says, once it has its confirmations."""
        if not await self._confirmed(found):
            return None
        await self._fenced()
        await self.store.batches.mark_anchored(
            batch.id,
            chain_id=await self.client.chain_id(),
            contract=self.contract.address,
            tx_hash=found.tx_hash,
            block_number=found.block_number,
            block_hash=found.block_hash,
            block_time=found.block_time,
            anchored_at=self._clock(),
        )
        self.state.batches_anchored += 1
        self.state.last_anchored_batch = batch.id
        delay = (self._clock() - batch.sealed_at).total_seconds()
        self.state.recent_delays = [*self.state.recent_delays[-31:], delay]
        metrics().anchor_confirmation.observe(delay)
        anchor_span(
            batch.id,
            _ns(batch.sealed_at),
            {"tx": "0x" + bytes(found.tx_hash).hex(), "block": found.block_number},
        )
        log.info("anchored batch %d in block %d", batch.id, found.block_number)
        return await self.store.batches.get(batch.id)

    async def _confirmed(self, found: OnChainAnchor) -> bool:
        if self.policy.confirmations <= 1:
            return True
        if self._round_head is None:  # one head read per round
            self._round_head = await self.client.block_number()
        head = self._round_head
        return head - found.block_number + 1 >= self.policy.confirmations

    async def find_anchor(self, root: bytes) -> OnChainAnchor | None:
        """Where ``root`` is anchored in this contract right now, or None."""
        anchor = await self.client.call(self.contract.functions.anchorOf(root))
        block_number = int(anchor[1])
        if block_number == 0:
            return None
        event = self.contract.events.RootAnchored()
        topic = event.topic
        logs = await self.client.rpc(
            lambda: self.client.w3.eth.get_logs(
                {
                    "address": self.contract.address,
                    "fromBlock": block_number,
                    "toBlock": block_number,
                    "topics": [HexStr(_0x(topic)), HexStr("0x" + root.hex())],
                }
            )
        )
        if not logs:
            raise ChainError(
                f"root 0x{root.hex()} is anchored at block {block_number}, "
                "but that block has no RootAnchored log for it"
            )
        entry = logs[-1]
        return OnChainAnchor(
            tx_hash=bytes(entry["transactionHash"]),
            block_number=block_number,
            block_hash=bytes(entry["blockHash"]),
            block_time=int(anchor[2]),
        )

    # --- reorgs ----------------------------------------------------------------------------

    async def check_anchors(self) -> list[int]:
        """Re-check the anchors of the last ``reorg_depth`` blocks; return the batches whose
        anchor moved or vanished (vanished ones are back to ``sealed``)."""
        head = await self.client.block_number()
        changed: list[int] = []
        after: int | None = None
        while True:
            batches = await self.store.batches.find(
                state=BatchState.ANCHORED,
                min_block=max(0, head - self.policy.reorg_depth),
                after_id=after,
                limit=500,
            )
            if not batches:
                return changed
            after = batches[-1].id
            hashes = await self._block_hashes(batches)
            self._round_head = None
            for batch in batches:
                if _still_anchored(batch, self.contract.address, hashes):
                    continue
                changed.append(batch.id)
                self.state.reanchored += 1
                found = await self.find_anchor(batch.root)
                if found is not None and await self._confirmed(found):
                    log.warning(
                        "batch %d: anchor moved to block %d by a reorg",
                        batch.id,
                        found.block_number,
                    )
                    await self.store.batches.mark_anchored(
                        batch.id,
                        chain_id=batch.chain_id,
                        contract=self.contract.address,
                        tx_hash=found.tx_hash,
                        block_number=found.block_number,
                        block_hash=found.block_hash,
                        block_time=found.block_time,
                        anchored_at=self._clock(),
                    )
                else:
                    reason = f"reorg: the anchor in block {batch.block_number} is gone"
                    log.warning("batch %d: %s; anchoring it again", batch.id, reason)
                    await self.store.batches.unanchor(batch.id, reason=reason)
                    await self.signer.reset_nonce()  # its transaction may be gone too
                    self._sealed.set()

    async def _block_hashes(self, batches: list[BatchRecord]) -> dict[int, bytes | None]:
        """The hash of every block these batches were anchored in, now (one batch request)."""
        numbers = sorted({b.block_number for b in batches if b.block_number is not None})
        answers = await self.client.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        )
        hashes: dict[int, bytes | None] = {}
        for number, answer in zip(numbers, answers, strict=True):
            if isinstance(answer, RpcFailure):
                raise ChainError(f"eth_getBlockByNumber({number}) failed: {answer.message}")
            hashes[number] = bytes(HexBytes(answer["hash"])) if isinstance(answer, dict) else None
        return hashes

    # --- fault injection -------------------------------------------------------------------

    def _crashpoint(self, name: str) -> None:
        """Testing only: SIGKILL this process at a named point (``CHAINSENSE_CRASH_AT``)."""
        if self._crash_at == name:
            log.error("fault injection: SIGKILL at %s", name)
            os.kill(os.getpid(), signal.SIGKILL)


def _still_anchored(batch: BatchRecord, contract: str, hashes: dict[int, bytes | None]) -> bool:
    if batch.contract != contract or batch.block_number is None:
        return False
    return hashes.get(batch.block_number) == batch.block_hash


def _unfunded(exc: BaseException) -> bool:
    """The node refused a transaction because the sender cannot pay for it."""
    return isinstance(exc, TransactionRejectedError) and "insufficient funds" in str(exc).lower()


def _0x(value: str | bytes) -> str:
    return value if isinstance(value, str) else "0x" + value.hex()


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch (a naive datetime from the store is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()
