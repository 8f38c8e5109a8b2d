"""The dev chain's state on disk: the chain's history in an append-only journal, the rest rewritten.

Anvil dumps its whole state at once (``anvil_dumpState``): accounts and storage, but also every
block and every transaction with its receipt and traces since genesis, ~10 kB per anchor
transaction. Rewriting all of that at each dump made a busy dev chain rewrite a file growing by
megabytes every second (issue 16: 0.8 to 2.4 MB in 10 minutes, rewritten every second).

Here a dump is split into files in the state directory:

- ``history.jsonl``: one line per block, ``{"number", "digest", "block", "transactions"}``, only
  ever appended (and fsynced) with the blocks mined since the last dump. The history still grows
  with the chain, as any chain's does (the registry mirror and proofs read old logs); it is just
  never written twice.
- ``code/<sha256>.hex``: each contract's code, written once (it never changes; it was most of
  the rest of a dump);
- ``storage.jsonl``: contract storage as a log of the slots each dump changed (anchors, device
  registrations and the EIP-2935 block-hash ring all add slots), compacted into a new file when
  it grows to four times what it describes;
- ``state.json``: the rest of the dump (balances, nonces, block environment), rewritten
  atomically, with ``chainsense_history`` naming the history and storage files and how many of
  their lines belong to it (and the digest of the last block). Lines past those counts (a crash
  between an append and the rewrite) are ignored at load and cut off by the next dump.

When the dumped history no longer starts with the journal's (``evm_revert``, a reorg of the dev
chain), the journal is rewritten whole into a new file, which the next ``state.json`` names (the
old file goes only then, so a crash in between loads the old state). :func:`assemble` puts it all
back together into the single
file Anvil's ``--load-state`` reads; a ``state.json`` in Anvil's own format (an older data dir)
loads as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HistoryJournal", "assemble"]

MARKER = "chainsense_history"
HISTORY = "history.jsonl"
STORAGE = "storage.jsonl"
COMPACT_MIN_BYTES = 256 * 1024  # a storage log smaller than this is never compacted
_CODE_REF = "chainsense-code:"
_CODE_INLINE = 64  # bytes of code kept in state.json (a precompile's stub, a proxy)


def _digest(block: dict[str, Any]) -> str:
    header = dict(block.get("header", block))
    if _number(block) == 0:
        header.pop("timestamp", None)  # Anvil stamps its genesis block anew at every start
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _number(block: dict[str, Any]) -> int:
    return int(str(block["header"]["number"]), 0)


@dataclass
class _Line:
    number: int
    digest: str


class HistoryJournal:
    """Writes Anvil dumps as ``history.jsonl`` (appended) plus ``state.json`` (rewritten)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.head = state_dir / "state.json"
        marker = _marker(self.head)
        self.history = state_dir / str(marker.get("file", HISTORY))
        self.storage = _StorageLog(state_dir, marker)
        self._lines: list[_Line] | None = None  # what the journal holds (read lazily)
        self._size = 0  # bytes of those lines
        self.code_dir = state_dir / "code"
        self._code_saved: set[str] = set()
        self.bytes_written = 0
        """Bytes written by :meth:`write` so far (history appended plus heads rewritten)."""

    def _known(self) -> list[_Line]:
        if self._lines is None:
            self._lines = [_Line(n, d) for n, d, _ in _read_lines(self.head, self.history)]
            self._size = _valid_length(self.history, len(self._lines))
        return self._lines

    def write(self, raw: bytes) -> None:
        """Save one Anvil dump (``raw``: its JSON): append the new blocks to the journal, then
        replace ``state.json`` atomically. Runs in a worker thread (blocking file I/O)."""
        state: dict[str, Any] = json.loads(raw)
        blocks: list[dict[str, Any]] = sorted(state.pop("blocks", []) or [], key=_number)
        txs: list[dict[str, Any]] = state.pop("transactions", []) or []
        by_block: dict[int, list[dict[str, Any]]] = {}
        for tx in txs:
            by_block.setdefault(int(tx.get("block_number", -1)), []).append(tx)
        known = self._known()
        lines = _one_per_number([(_number(b), _digest(b), b) for b in blocks], known)
        numbers = {n for n, _, _ in lines}
        orphans = [tx for n, block_txs in by_block.items() if n not in numbers for tx in block_txs]
        keep = 0  # how many journal lines the dump's history starts with
        for (number, digest, _), line in zip(lines, known, strict=False):
            if (number, digest) != (line.number, line.digest):
                break
            keep += 1
        new = lines[keep:]
        text = "".join(
            json.dumps(
                {"number": n, "digest": d, "block": b, "transactions": by_block.get(n, [])},
                separators=(",", ":"),
            )
            + "\n"
            for n, d, b in new
        )
        retired: list[Path] = []
        if keep == len(known):
            self._append(text)  # the usual case: only blocks mined since the last dump
        else:
            kept = "".join(
                json.dumps(
                    {"number": n, "digest": d, "block": b, "transactions": by_block.get(n, [])},
                    separators=(",", ":"),
                )
                + "\n"
                for n, d, b in lines[:keep]
            )
            data = (kept + text).encode()
            # the history was rewritten (a revert): a new file, which the new state.json names;
            # the old one stays until then, so a crash in between loads the old state whole
            retired.append(self.history)
            self.history = self.state_dir / f"history-{secrets.token_hex(4)}.jsonl"
            _atomic_write(self.history, data)
            self._size = len(data)
            self.bytes_written += len(kept)
        self._lines = [_Line(n, d) for n, d, _ in lines]
        state["transactions"] = orphans  # none in practice: every dumped one is in a block
        accounts = state.get("accounts") or {}
        self._store_code(accounts)
        storage_written, storage_retired = self.storage.save(accounts)
        retired += storage_retired
        state[MARKER] = {
            "file": self.history.name,
            "blocks": len(lines),
            "last_digest": lines[-1][1] if lines else None,
            **self.storage.marker(),
        }
        head = json.dumps(state, separators=(",", ":")).encode()
        _atomic_write(self.head, head)
        for path in retired:
            if path != self.history and path != self.storage.path:
                path.unlink(missing_ok=True)
        self.bytes_written += len(text) + len(head) + storage_written

    def _store_code(self, accounts: dict[str, Any]) -> None:
        """Contract code, which never changes, goes to ``code/<sha256>.hex`` once; the account
        keeps a reference to it (most of ``state.json`` was the contracts' code)."""
        for account in accounts.values():
            code = account.get("code")
            if not isinstance(code, str) or len(code) <= 2 + 2 * _CODE_INLINE:
                continue
            name = hashlib.sha256(code.encode()).hexdigest()
            path = self.code_dir / f"{name}.hex"
            if name not in self._code_saved:
                if not path.exists():
                    self.code_dir.mkdir(exist_ok=True)
                    _atomic_write(path, code.encode())
                    self.bytes_written += len(code)
                self._code_saved.add(name)
            account["code"] = _CODE_REF + name

    def _append(self, text: str) -> None:
        if not text:
            return
        self._known()
        data = text.encode()
        _append_synced(self.history, self._size, data)
        self._size += len(data)


def _marker(head: Path) -> dict[str, Any]:
    if not head.exists():
        return {}
    try:
        marker = json.loads(head.read_bytes()).get(MARKER)
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


class _StorageLog:
    """Contract storage as a log of changes: each dump appends the slots that changed since the
    previous one (a cleared slot as ``0x0``), so ``state.json`` holds no storage at all. When
    the log has grown to four times what it describes, it is compacted into a new file (one
    line: every live slot) that the next ``state.json`` names."""

    def __init__(self, state_dir: Path, marker: dict[str, Any]) -> None:
        self.state_dir = state_dir
        self.path = state_dir / str(marker.get("storage_file", STORAGE))
        self._count = int(marker.get("storage_lines", 0)) if marker.get("storage_file") else 0
        self._live: dict[str, dict[str, str]] | None = None
        self._size = 0

    def marker(self) -> dict[str, Any]:
        return {"storage_file": self.path.name, "storage_lines": self._count}

    def _load(self) -> dict[str, dict[str, str]]:
        if self._live is None:
            self._live, self._size = self._replay()
        return self._live

    def _replay(self) -> tuple[dict[str, dict[str, str]], int]:
        live: dict[str, dict[str, str]] = {}
        size = lines = 0
        if self._count == 0:
            return live, 0
        with self.path.open("rb") as f:
            for n, raw in enumerate(f):
                if n == self._count:
                    break
                size += len(raw)
                for address, slots in json.loads(raw).items():
                    account = live.setdefault(address, {})
                    for slot, value in slots.items():
                        if int(value, 16) == 0:
                            account.pop(slot, None)
                        else:
                            account[slot] = value
                lines = n + 1
        if lines != self._count:
            raise ValueError(f"{self.path} holds {lines} of the {self._count} lines it should")
        return live, size

    def restore(self, accounts: dict[str, Any]) -> None:
        """Put the logged storage back into ``accounts`` (at load)."""
        live = self._load()
        for address, account in accounts.items():
            if isinstance(account, dict) and not account.get("storage"):
                account["storage"] = dict(live.get(address, {}))

    def save(self, accounts: dict[str, Any]) -> tuple[int, list[Path]]:
        """Log what changed in ``accounts``' storage and empty it there; return the bytes
        written and a file to delete once ``state.json`` no longer names it."""
        live = self._load()
        changes: dict[str, dict[str, str]] = {}
        for address, account in accounts.items():
            if not isinstance(account, dict):
                continue
            now: dict[str, str] = account.get("storage") or {}
            before = live.get(address, {})
            diff = {k: v for k, v in now.items() if before.get(k) != v}
            diff.update({k: "0x0" for k in before if k not in now})
            if diff:
                changes[address] = diff
            live[address] = dict(now)
            account["storage"] = {}
        for address in [a for a in live if a not in accounts]:
            changes[address] = {k: "0x0" for k in live.pop(address)}
        if not changes:
            return 0, []
        live_bytes = sum(len(k) + len(v) + 6 for slots in live.values() for k, v in slots.items())
        line = json.dumps(changes, separators=(",", ":")) + "\n"
        if self._size + len(line) > max(4 * live_bytes, COMPACT_MIN_BYTES):
            old = self.path
            self.path = self.state_dir / f"storage-{secrets.token_hex(4)}.jsonl"
            data = (json.dumps(live, separators=(",", ":")) + "\n").encode()
            _atomic_write(self.path, data)
            self._count, self._size = 1, len(data)
            return len(data), [old]
        data = line.encode()
        _append_synced(self.path, self._size, data)
        self._count += 1
        self._size += len(data)
        return len(data), []


def _one_per_number(
    lines: list[tuple[int, str, dict[str, Any]]], known: list[_Line]
) -> list[tuple[int, str, dict[str, Any]]]:
    """One block per number: after ``--load-state`` Anvil dumps its own new genesis block next
    to the loaded one; the one the journal holds is kept."""
    journal = {line.number: line.digest for line in known}
    chosen: dict[int, tuple[int, str, dict[str, Any]]] = {}
    for line in lines:
        number, digest, _ = line
        if number not in chosen or journal.get(number) == digest:
            chosen[number] = line
    return [chosen[n] for n in sorted(chosen)]


def assemble(state_dir: Path) -> Path | None:
    """The file to pass to Anvil's ``--load-state``: ``state.json`` itself when it is in
    Anvil's format, else ``state.json`` and the journal joined into ``state.load.json``; None
    when nothing was saved."""
    head = state_dir / "state.json"
    if not head.exists():
        return None
    state: dict[str, Any] = json.loads(head.read_bytes())
    if MARKER not in state:
        return head
    marker = state[MARKER]
    entries = _read_lines(head, state_dir / str(marker.get("file", HISTORY)), state=state)
    blocks = [block for _, _, (block, _) in entries]
    txs = [tx for _, _, (_, block_txs) in entries for tx in block_txs]
    txs += state.get("transactions") or []
    _StorageLog(state_dir, marker).restore(state.get("accounts") or {})
    del state[MARKER]
    for account in (state.get("accounts") or {}).values():
        code = account.get("code")
        if isinstance(code, str) and code.startswith(_CODE_REF):
            name = code.removeprefix(_CODE_REF)
            account["code"] = (state_dir / "code" / f"{name}.hex").read_text()
    state["blocks"] = blocks
    state["transactions"] = txs
    out = state_dir / "state.load.json"
    _atomic_write(out, json.dumps(state, separators=(",", ":")).encode())
    return out


def _read_lines(
    head: Path, history: Path, *, state: dict[str, Any] | None = None
) -> list[tuple[int, str, tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """The journal lines ``state.json`` counts (none when either file is missing)."""
    if state is None:
        if not head.exists():
            return []
        state = json.loads(head.read_bytes())
    marker = state.get(MARKER)
    if not marker or not history.exists():
        return []
    count = int(marker["blocks"])
    out: list[tuple[int, str, tuple[dict[str, Any], list[dict[str, Any]]]]] = []
    with history.open("rb") as f:
        for raw in f:
            if len(out) == count:
                break
            entry = json.loads(raw)
            out.append((entry["number"], entry["digest"], (entry["block"], entry["transactions"])))
    if len(out) != count or (out and out[-1][1] != marker["last_digest"]):
        raise ValueError(f"{history} holds {len(out)} of the {count} blocks {head} counts")
    return out


def _valid_length(history: Path, lines: int) -> int:
    """Bytes of the first ``lines`` lines of ``history``."""
    if not history.exists():
        return 0
    size = 0
    with history.open("rb") as f:
        for _, raw in zip(range(lines), f, strict=False):
            size += len(raw)
    return size


def _append_synced(path: Path, size: int, data: bytes) -> None:
    """Append ``data`` to ``path`` at ``size`` (cutting the lines a crash left past what
    state.json counts) and fsync it."""
    with path.open("ab") as f:
        if f.tell() != size:
            f.truncate(size)
            f.seek(size)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk keeps no half-written copy
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
