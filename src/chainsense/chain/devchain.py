"""The local development chain: an Anvil node that ChainSense starts, persists and stops itself.

Persistence: every ``anvil_state_interval`` seconds ChainSense asks Anvil for its head block;
when a block was mined (or reverted) since the last dump, and at least every 30 s, it asks for
the whole state (``anvil_dumpState``) and whenever it stops. The dump is saved in two files
(:mod:`chainsense.chain.statefile`): the blocks and transactions mined since the last dump are
appended to ``<data_dir>/chain/history.jsonl``, and the rest (accounts, storage) replaces
``state.json`` atomically (temp file, fsync, rename); the next start joins them for Anvil's
``--load-state``. Blocks, receipts, balances and contracts survive. What a ``kill -9`` can lose
is therefore bounded: the transactions mined in the last ``anvil_state_interval`` seconds
(default 1 s) before the kill. A half-written dump cannot happen: ``state.json`` counts the
journal lines that belong to it, and is replaced only by a complete new one.

A dump that fails (a full disk, an unwritable directory) is never silent: :attr:`DevChain.dumps`
says since when it fails and why, ``/readyz`` reports the platform not ready with that reason,
and the failure and the recovery are logged once each. While dumps fail, what a restart would
lose grows: everything since the last saved state.

Anvil is started with the parent-death signal set (Linux), so it never outlives a killed ChainSense.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gzip
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from chainsense.chain.statefile import HistoryJournal, assemble
from chainsense.errors import DevChainError

__all__ = [
    "DUMP_REPORT",
    "DevChain",
    "DumpReportView",
    "DumpStatus",
    "find_anvil",
    "read_dump_report",
    "write_dump_report",
]

_UNCHANGED_DUMP_S = 30.0

DUMP_REPORT = "dumps.json"
"""The file in the dev chain's directory where ``chainsense chain up`` reports its state saves."""

log = logging.getLogger(__name__)

_PLATFORM = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def find_anvil(explicit: Path | None = None) -> Path:
    """Locate the Anvil binary: ``explicit``, then the npm package ``@foundry-rs/anvil`` in a
    ``node_modules`` above the working directory or this file, then ``PATH``."""
    if explicit is not None:
        if not explicit.is_file():
            raise DevChainError(f"anvil binary {explicit} does not exist")
        return explicit
    plat = _PLATFORM.get(sys.platform, sys.platform)
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    name = "anvil.exe" if plat == "win32" else "anvil"
    rel = Path("node_modules", "@foundry-rs", f"anvil-{plat}-{arch}", "bin", name)
    for base in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        candidate = base / rel
        if candidate.is_file():
            return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise DevChainError(
        "no anvil binary found: run `npm ci` in the ChainSense checkout (the Makefile does), "
        "set CHAINSENSE_ANVIL_BIN, or set CHAINSENSE_RPC_URL to use an external chain"
    )


@dataclass
class DumpStatus:
    """How the periodic state dumps go (times from ``time.monotonic()``)."""

    last_saved: float | None = None
    """When the state on disk was last known to match the chain's."""
    failing_since: float | None = None
    last_error: str | None = None

    def saved(self) -> None:
        if self.failing_since is not None:
            log.info("dev chain state dump works again: state saved")
        self.last_saved = time.monotonic()
        self.failing_since = None
        self.last_error = None

    def failed(self, reason: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.error(
                "dev chain state dump failing: %s; a restart now would roll the chain back to "
                "the last saved state",
                reason,
            )
        self.last_error = reason

    def report(self) -> dict[str, object]:
        """The status as another process reads it (:func:`read_dump_report`): wall-clock times."""
        now_mono, now_wall = time.monotonic(), time.time()

        def wall(t: float | None) -> float | None:
            return None if t is None else round(now_wall - (now_mono - t), 3)

        return {
            "pid": os.getpid(),
            "reported_at": round(now_wall, 3),
            "last_saved_at": wall(self.last_saved),
            "failing_since": wall(self.failing_since),
            "last_error": self.last_error,
        }


def write_dump_report(path: Path, dumps: DumpStatus) -> None:
    """Replace ``path`` with ``dumps``' report (atomically: a reader never sees half of it). A
    full disk stops the reports too, which the reader sees as their age."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dumps.report()), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class DumpReportView:
    """What a process that does not run the dev chain knows of its state saves."""

    ok: bool
    line: str
    """``/readyz``'s line: ``ok (...)`` or ``failing...``."""
    saved_age: float | None
    """Seconds since the state was last saved, if it ever was."""


def read_dump_report(path: Path, interval: float) -> DumpReportView:
    """The state saves of a dev chain another process runs (``serve --workers`` runs it as
    ``chainsense chain up``, which reports to ``path`` after every dump round). A report older
    than five rounds (10 s at least) is a failure: a hung process, or a full disk, stops them."""
    now = time.time()
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        reported_at = float(report["reported_at"])
        saved = report.get("last_saved_at")
        # wall-clock times converted from monotonic ones: a fresh save can come out a few
        # microseconds in the future
        saved_age = None if saved is None else max(0.0, now - float(saved))
        failing_since = report.get("failing_since")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        line = f"failing: no report from the dev chain's process in {path}: {exc}"
        return DumpReportView(False, line, None)
    saved_text = "never saved" if saved_age is None else f"last saved {saved_age:.0f} s ago"
    if now - reported_at > max(5 * interval, 10.0):
        line = (
            f"failing: the dev chain's process (pid {report.get('pid')}) last reported "
            f"{now - reported_at:.0f} s ago (every {interval:g} s expected; a hung process or "
            f"a full disk stops its reports; {saved_text})"
        )
        return DumpReportView(False, line, saved_age)
    if failing_since is not None:
        line = (
            f"failing for {max(0.0, now - float(failing_since)):.0f} s: {report.get('last_error')} "
            f"({saved_text}; a restart now would roll the dev chain back to it)"
        )
        return DumpReportView(False, line, saved_age)
    if saved_age is None:
        return DumpReportView(True, "ok (first save pending)", None)
    return DumpReportView(True, f"ok (saved {saved_age:.1f} s ago, by `chain up`)", saved_age)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    os.setpgrp()


class DevChain:
    """An Anvil node with its state persisted in ``state_dir``.

    Use as an async context manager, or call :meth:`start` and :meth:`stop`::

        async with DevChain(state_dir=Path(".chainsense/chain")) as chain:
            print(chain.rpc_url)
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8545,
        chain_id: int = 31337,
        state_interval: float = 1.0,
        anvil_bin: Path | None = None,
        start_timeout: float = 20.0,
        report_file: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.report_file = report_file
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.state_interval = state_interval
        self._anvil_bin = anvil_bin
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dumper: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._last_digest: bytes | None = None
        self._last_head: str | None = None
        self._last_full = 0.0
        self.journal = HistoryJournal(state_dir)
        self.dumps = DumpStatus()

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "anvil.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def __aenter__(self) -> DevChain:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start Anvil (loading the saved state, if any) and wait until it answers."""
        if self._proc is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._http = httpx.AsyncClient(timeout=5.0)
        if await self._answers():
            raise DevChainError(
                f"port {self.port} on {self.host} is already serving JSON-RPC; stop that node, set "
                "CHAINSENSE_ANVIL_PORT to a free port, or set CHAINSENSE_RPC_URL to use it"
            )
        binary = find_anvil(self._anvil_bin)
        args = [
            str(binary),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--silent",
        ]  # fmt: skip
        try:
            load = await asyncio.to_thread(assemble, self.state_dir)
        except (OSError, ValueError) as exc:
            raise DevChainError(
                f"cannot read the saved dev chain state in {self.state_dir}: {exc}"
            ) from exc
        if load is not None:
            args += ["--load-state", str(load)]
        log.info("starting anvil: %s", " ".join(args))
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - fork+exec returns at once
                args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + self._start_timeout
        while not await self._answers():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise DevChainError(
                    f"anvil exited with code {code} while starting; see {self.log_file}"
                )
            if time.monotonic() > deadline:
                await self._terminate()
                raise DevChainError(f"anvil did not answer within {self._start_timeout:g} s")
            await asyncio.sleep(0.05)
        chain_id = int(await self._rpc("eth_chainId"), 16)
        if chain_id != self.chain_id:
            await self._terminate()
            raise DevChainError(f"anvil reports chain id {chain_id}, expected {self.chain_id}")
        if load is not None and load != self.state_file:
            load.unlink(missing_ok=True)  # Anvil has read it; the journal and head remain
        self._dumper = asyncio.create_task(self._dump_periodically(), name="anvil-state-dumper")

    async def stop(self) -> None:
        """Save the state one last time and stop Anvil."""
        if self._dumper is not None:
            self._dumper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dumper
            self._dumper = None
        if self._proc is not None and self._proc.poll() is None:
            try:
                await self.dump()
            except DevChainError as exc:
                log.warning("final state dump failed: %s", exc)
        await self._terminate()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def dump(self) -> bool:
        """Write Anvil's current state to :attr:`state_file` atomically.

        Returns False when the state has not changed since the last dump (nothing written).
        """
        # The state is megabytes of hex: decoding, unzipping and hashing it happen in a worker
        # thread, so a dump never stalls the event loop that answers devices.
        try:
            hex_state = await self._rpc("anvil_dumpState", raw=True)
            raw, digest = await asyncio.to_thread(_decode_state, hex_state)
            if digest == self._last_digest:
                self.dumps.saved()
                return False
            try:
                await asyncio.to_thread(self.journal.write, raw)
            except OSError as exc:
                raise DevChainError(
                    f"cannot write the dev chain state to {self.state_file}: {exc.strerror or exc}"
                ) from exc
        except DevChainError as exc:
            self.dumps.failed(str(exc))
            raise
        self._last_digest = digest
        self.dumps.saved()
        return True

    async def _head(self) -> str:
        """The newest block's hash: what changes when anything is mined or reverted."""
        assert self._http is not None
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber"}
        try:
            response = await self._http.post(
                self.rpc_url, json={**body, "params": ["latest", False]}
            )
            return str(response.json()["result"]["hash"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise DevChainError(f"eth_getBlockByNumber on {self.rpc_url} failed: {exc}") from exc

    async def dump_if_changed(self) -> bool:
        """Dump when a block was mined (or reverted) since the last dump, and at least every
        ``_UNCHANGED_DUMP_S`` seconds (a change without a block, ``anvil_setBalance``); the head
        check is one small request, the dump Anvil's whole state."""
        try:
            head = await self._head()
        except DevChainError as exc:
            self.dumps.failed(str(exc))
            raise
        now = time.monotonic()
        if head == self._last_head and now - self._last_full < _UNCHANGED_DUMP_S:
            self.dumps.saved()
            return False
        written = await self.dump()
        self._last_head = head
        self._last_full = now
        return written

    async def _dump_periodically(self) -> None:
        await self._report()
        while True:
            await asyncio.sleep(self.state_interval)
            try:
                await self.dump_if_changed()
            except DevChainError:
                pass  # recorded in self.dumps and logged once by it
            except Exception as exc:  # never let the dumper die silently
                self.dumps.failed(f"state dump failed: {type(exc).__name__}: {exc}")
            await self._report()

    async def _report(self) -> None:
        """Tell other processes how the dumps go (``report_file``), when asked to."""
        if self.report_file is None:
            return
        try:
            await asyncio.to_thread(write_dump_report, self.report_file, self.dumps)
        except OSError as exc:  # a full disk: the report's age says it to the reader
            log.debug("cannot write the dump report %s: %s", self.report_file, exc)

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def _answers(self) -> bool:
        try:
            await self._rpc("eth_chainId")
        except DevChainError:
            return False
        return True

    async def _rpc(
        self, method: str, params: list[object] | None = None, *, raw: bool = False
    ) -> str:
        assert self._http is not None
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        try:
            response = await self._http.post(self.rpc_url, json=body)
            content = response.content
            # a large answer is parsed off the event loop
            data = await asyncio.to_thread(json.loads, content) if raw else response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DevChainError(f"{method} on {self.rpc_url} failed: {exc}") from exc
        if "error" in data:
            raise DevChainError(f"{method} on {self.rpc_url} failed: {data['error']}")
        result: str = data["result"]
        return result


def _decode_state(hex_state: str) -> tuple[bytes, bytes]:
    """Anvil's dumped state as bytes (gunzipped), and its sha256."""
    raw = bytes.fromhex(hex_state.removeprefix("0x"))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw, hashlib.sha256(raw).digest()
