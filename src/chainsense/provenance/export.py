"""Proof export: one reading's proof document, or many for a device and time range.

A proof needs the reading's batch to be anchored. Until then the answer is :class:`Pending`,
which says where the reading is (waiting for a batch, or sealed and waiting for its anchor) and
how long that should take. Merkle paths are rebuilt from the batch's struct hashes (the tree of a
2000-reading batch builds in a few milliseconds); a small cache keeps the last trees for bulk
export. The anchor block's header and the receipts-trie proof come from the chain
(:class:`~chainsense.provenance.blockfetch.BlockEvidenceSource`, cached per block).
"""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chainsense.errors import ChainSenseError
from chainsense.identity import Reading
from chainsense.provenance.anchorer import AnchorerStatus, AnchorPolicy
from chainsense.provenance.blockfetch import BlockEvidence
from chainsense.provenance.bundle_v2 import HEADER, BatchSection, batch_line, complete_proof_line
from chainsense.provenance.merkle import MerkleTree, leaf_of
from chainsense.provenance.proof import (
    AnchorRef,
    DomainRef,
    MetricRef,
    ProofDocument,
    SchemaRef,
)
from chainsense.store import BatchRecord, BatchState, Store, StoredReading
from chainsense.telemetry.schemas import SchemaRegistry

__all__ = ["Pending", "ProofService", "ReadingNotFoundError", "readings_csv", "readings_jsonl"]

_TREE_CACHE = 8
_PAGE = 1000
_BATCH_PAGE = 100


class ReadingNotFoundError(ChainSenseError):
    def __init__(self, reading_id: int) -> None:
        super().__init__(f"no reading with id {reading_id}")
        self.reading_id = reading_id


@dataclass(frozen=True)
class Pending:
    """A reading whose proof does not exist yet."""

    reading_id: int
    state: str
    """``unbatched`` (waiting to be sealed) or ``sealed`` (its batch waits for its anchor)."""
    batch_id: int | None
    expected_wait_seconds: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "pending",
            "reading_id": self.reading_id,
            "state": self.state,
            "batch_id": self.batch_id,
            "expected_wait_seconds": round(self.expected_wait_seconds, 3),
            "detail": self.detail,
        }


class ProofService:
    """Builds proof documents from the store (and says how long pending ones will take)."""

    def __init__(
        self,
        *,
        store: Store,
        schemas: SchemaRegistry,
        domain: DomainRef,
        policy: AnchorPolicy,
        evidence: Callable[[int, bytes], Awaitable[BlockEvidence]],
        status: Callable[[], AnchorerStatus] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.schemas = schemas
        self.domain = domain
        self.policy = policy
        self._evidence = evidence
        self._status = status or AnchorerStatus
        self._clock = clock
        self._trees: OrderedDict[int, MerkleTree] = OrderedDict()

    async def proof(self, reading_id: int) -> ProofDocument | Pending:
        """The proof of one reading; ReadingNotFoundError if there is no such reading."""
        row = await self.store.readings.get(reading_id)
        if row is None:
            raise ReadingNotFoundError(reading_id)
        batch = None if row.batch_id is None else await self.store.batches.get(row.batch_id)
        return await self._document(row, batch)

    async def proofs(
        self, *, device: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> AsyncIterator[tuple[StoredReading, ProofDocument | Pending]]:
        """Every reading of ``device`` in the time range, oldest first, with its proof."""
        after: int | None = None
        batches: dict[int, BatchRecord | None] = {}
        while True:
            page = await self.store.readings.query(
                device=device, since_ms=since_ms, until_ms=until_ms, after_id=after, limit=_PAGE
            )
            if not page:
                return
            for row in page:
                batch = None
                if row.batch_id is not None:
                    if row.batch_id not in batches:
                        batches[row.batch_id] = await self.store.batches.get(row.batch_id)
                    batch = batches[row.batch_id]
                yield row, await self._document(row, batch)
            after = page[-1].id

    async def _document(
        self, row: StoredReading, batch: BatchRecord | None
    ) -> ProofDocument | Pending:
        if batch is None:
            return self._pending_unbatched(row)
        if batch.state is not BatchState.ANCHORED:
            return self._pending_sealed(row, batch)
        tree = await self._tree(batch)
        anchor = await self._anchor(batch)
        return ProofDocument(
            reading=Reading(row.device, row.seq, row.timestamp, row.schema, row.values),
            signature=row.signature,
            domain=self.domain,
            schema=self._schema(row.schema),
            struct_hash=row.struct_hash,
            leaf=leaf_of(row.struct_hash),
            proof=tuple(tree.proof(row.struct_hash)),
            root=batch.root,
            anchor=anchor,
            reading_id=row.id,
            batch_id=batch.id,
        )

    async def _anchor(self, batch: BatchRecord) -> AnchorRef:
        """An anchored batch's anchor, with its block's header and receipts-trie proof."""
        assert batch.tx_hash is not None
        assert batch.block_number is not None
        assert batch.block_time is not None
        block = await self._evidence(batch.block_number, batch.tx_hash)
        if batch.block_hash is not None and block.block_hash != batch.block_hash:
            raise ChainSenseError(
                f"batch {batch.id}: block {batch.block_number} is now 0x{block.block_hash.hex()}, "
                f"not the recorded 0x{batch.block_hash.hex()}; the anchorer re-anchors after a "
                "reorg, ask again shortly"
            )
        return AnchorRef(
            chain_id=batch.chain_id,
            contract=batch.contract,
            tx_hash=batch.tx_hash,
            block_number=batch.block_number,
            block_time=batch.block_time,
            block_hash=block.block_hash,
            tx_index=block.tx_index,
            header_rlp=block.header_rlp,
            receipt_proof=block.receipt_proof,
        )

    async def batch_bundle(
        self, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> AsyncIterator[str]:
        """A ``chainsense.bundle.v2`` bundle of whole batches, in chunks of lines (each ends
        with ``\n``): the format line, then for every batch anchored in a block whose time is
        in ``[since_ms, until_ms)`` (ms; block times are whole seconds), by batch id, one
        complete section: its batch line (``"complete": true``, the schema blocks its
        readings name) and a proof line per reading, by reading id, with no Merkle path.

        The tree sorts its leaves by hash, so the order of the proof lines does not change
        the root the verifier rebuilds. Sealed batches not anchored yet have no anchor time
        and are left out, as are readings in no batch. Memory stays bounded: one page of
        readings at a time, never a whole batch or the whole range."""
        yield HEADER.decode() + "\n"
        since_s = None if since_ms is None else -(-since_ms // 1000)
        until_s = None if until_ms is None else -(-until_ms // 1000)
        after: int | None = None
        while found := await self.store.batches.find(
            state=BatchState.ANCHORED,
            after_id=after,
            block_time_since=since_s,
            block_time_until=until_s,
            limit=_BATCH_PAGE,
        ):
            for batch in found:
                schemas = tuple(
                    self._schema(s) for s in await self.store.batches.schema_ids(batch.id)
                )
                section = BatchSection(
                    batch.root, self.domain, schemas, await self._anchor(batch), batch.id, True
                )
                yield batch_line(section) + "\n"
                last: int | None = None
                while page := await self.store.readings.query(
                    batch_id=batch.id, after_id=last, limit=_PAGE
                ):
                    yield "".join(
                        complete_proof_line(
                            Reading(r.device, r.seq, r.timestamp, r.schema, r.values),
                            r.signature,
                            r.id,
                        )
                        + "\n"
                        for r in page
                    )
                    last = page[-1].id
            after = found[-1].id

    async def _tree(self, batch: BatchRecord) -> MerkleTree:
        tree = self._trees.get(batch.id)
        if tree is None or tree.root != batch.root:
            hashes = [h for _, h in await self.store.batches.struct_hashes(batch.id)]
            tree = MerkleTree(hashes)
            if tree.root != batch.root:
                raise ChainSenseError(
                    f"batch {batch.id}: its readings hash to 0x{tree.root.hex()}, not to the "
                    f"recorded root 0x{batch.root.hex()}; the store was altered"
                )
            self._trees[batch.id] = tree
            while len(self._trees) > _TREE_CACHE:
                self._trees.popitem(last=False)
        self._trees.move_to_end(batch.id)
        return tree

    def _schema(self, schema_id: bytes) -> SchemaRef:
        schema = self.schemas.by_id(schema_id)  # ingest accepts only known schemas
        metrics = tuple(MetricRef(m.name, m.unit, m.scale) for m in schema.metrics)
        return SchemaRef(id=schema.id, name=schema.name, metrics=metrics, version=schema.version)

    # --- pending answers -------------------------------------------------------------------

    def _anchor_wait(self) -> tuple[float, str]:
        status = self._status()
        wait = status.expected_anchor_seconds(self.policy)
        if status.chain_ok:
            return wait, ""
        problem = f"; anchoring is failing ({status.last_error}) and retrying"
        return wait + self.policy.retry_delay(status.consecutive_failures), problem

    def _pending_unbatched(self, row: StoredReading) -> Pending:
        age = (self._clock() - row.received_at).total_seconds()
        seal_in = max(0.0, self.policy.max_age - age) + self.policy.poll_interval
        anchor, problem = self._anchor_wait()
        return Pending(
            reading_id=row.id,
            state="unbatched",
            batch_id=None,
            expected_wait_seconds=seal_in + anchor,
            detail="stored, waiting to be sealed into a Merkle batch (batches seal at "
            f"{self.policy.max_size} readings or {self.policy.max_age:g} s)" + problem,
        )

    def _pending_sealed(self, row: StoredReading, batch: BatchRecord) -> Pending:
        anchor, problem = self._anchor_wait()
        age = (self._clock() - batch.sealed_at).total_seconds()
        return Pending(
            reading_id=row.id,
            state="sealed",
            batch_id=batch.id,
            expected_wait_seconds=max(0.0, anchor - age) + self.policy.poll_interval,
            detail=f"sealed in batch {batch.id}, waiting for its anchor transaction"
            + (f" (last error: {batch.last_error})" if batch.last_error else "")
            + problem,
        )


# --- bulk formats ------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "device",
    "seq",
    "timestamp",
    "schema",
    "values",
    "signature",
    "struct_hash",
    "received_at",
    "batch_id",
)


def readings_csv(rows: Iterable[StoredReading], *, header: bool = True) -> str:
    """Readings as CSV; ``values`` is a space-separated list of the signed integers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            (
                r.id,
                r.device,
                r.seq,
                r.timestamp,
                "0x" + r.schema.hex(),
                " ".join(str(v) for v in r.values),
                "0x" + r.signature.hex(),
                "0x" + r.struct_hash.hex(),
                r.received_at.isoformat(),
                "" if r.batch_id is None else r.batch_id,
            )
        )
    return out.getvalue()


def readings_jsonl(rows: Iterable[StoredReading]) -> str:
    """Readings as JSON lines, each in the raw signed form plus the platform's references."""
    lines = []
    for r in rows:
        raw = Reading(r.device, r.seq, r.timestamp, r.schema, r.values).to_json()
        raw["signature"] = "0x" + r.signature.hex()
        raw["id"] = r.id
        raw["received_at"] = r.received_at.isoformat()
        raw["batch_id"] = r.batch_id
        lines.append(json.dumps(raw, separators=(",", ":")) + "\n")
    return "".join(lines)
