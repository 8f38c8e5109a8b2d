"""The dev chain's state files: history appended once, the rest rewritten, joined back at start.

Unit tests on Anvil-shaped dumps, then a real Anvil: dumps after each anchor transaction write
a small fraction of what whole dumps would, and a restart from the files keeps every block and
receipt."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from chainsense.chain import ChainClient, DevChain
from chainsense.chain.statefile import HistoryJournal, assemble
from tests.support import deployed_chain, free_port


def _block(number: int, parent: str = "p") -> dict[str, Any]:
    return {"header": {"number": hex(number), "parentHash": f"{parent}{number}"}, "ommers": []}


def _dump(
    blocks: int,
    *,
    parent: str = "p",
    code: str = "0x" + "ab" * 500,
    storage: dict[str, str] | None = None,
) -> bytes:
    return json.dumps(
        {
            "block": {"number": hex(blocks - 1)},
            "accounts": {
                "0xc0de": {"nonce": 1, "code": code, "storage": storage or {"0x0": hex(blocks)}}
            },
            "best_block_number": blocks - 1,
            "blocks": [_block(n, parent) for n in range(blocks)],
            "transactions": [
                {"info": {"n": n}, "block_number": n, "block_hash": f"h{n}"}
                for n in range(1, blocks)
            ],
        }
    ).encode()


def _loaded(state_dir: Path) -> dict[str, Any]:
    path = assemble(state_dir)
    assert path is not None
    loaded: dict[str, Any] = json.loads(path.read_bytes())
    return loaded


def test_history_is_appended_once_and_joined_back(tmp_path: Path) -> None:
    journal = HistoryJournal(tmp_path)
    journal.write(_dump(3))
    size = (tmp_path / "history.jsonl").stat().st_size
    head = (tmp_path / "state.json").stat().st_size
    journal.write(_dump(4))  # one block more
    grown = (tmp_path / "history.jsonl").stat().st_size - size
    line = len((tmp_path / "history.jsonl").read_bytes().splitlines()[-1]) + 1
    assert grown == line  # only the new block was written
    assert (tmp_path / "state.json").stat().st_size < 400  # code moved out: ~1 kB of it
    assert head < 400
    loaded = _loaded(tmp_path)
    assert json.loads(_dump(4)) == loaded
    # a fresh writer (a restart) appends after what is there
    HistoryJournal(tmp_path).write(_dump(5))
    assert _loaded(tmp_path) == json.loads(_dump(5))


def test_lines_a_crash_left_past_the_head_are_ignored_and_cut(tmp_path: Path) -> None:
    HistoryJournal(tmp_path).write(_dump(3))
    with (tmp_path / "history.jsonl").open("ab") as f:
        f.write(b'{"number": 3, "digest": "x", "block": {}, "transact')  # died mid-append
    assert _loaded(tmp_path) == json.loads(_dump(3))
    HistoryJournal(tmp_path).write(_dump(4))
    assert _loaded(tmp_path) == json.loads(_dump(4))
    assert len((tmp_path / "history.jsonl").read_bytes().splitlines()) == 4


def test_a_rewritten_history_rewrites_the_journal(tmp_path: Path) -> None:
    journal = HistoryJournal(tmp_path)
    journal.write(_dump(5))
    journal.write(_dump(3, parent="q"))  # evm_revert and different blocks
    assert _loaded(tmp_path) == json.loads(_dump(3, parent="q"))


def test_a_state_file_in_anvils_own_format_loads_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(_dump(2))
    assert assemble(tmp_path) == tmp_path / "state.json"
    HistoryJournal(tmp_path).write(_dump(3))  # the next dump converts it
    assert _loaded(tmp_path) == json.loads(_dump(3))


def test_storage_is_logged_as_changes_and_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chainsense.chain.statefile.COMPACT_MIN_BYTES", 4096)
    journal = HistoryJournal(tmp_path)
    slots = {hex(i): hex(i + 1) for i in range(200)}
    journal.write(_dump(2, storage=slots))
    assert (tmp_path / "state.json").stat().st_size < 400  # no storage in it
    first = journal.storage.path.stat().st_size
    slots = {**slots, "0x5": "0x99", "0x1000": "0x1"}  # one changed, one added
    del slots["0x7"]  # one cleared
    journal.write(_dump(3, storage=slots))
    assert journal.storage.path.stat().st_size - first < 100  # only the three changes
    assert _loaded(tmp_path) == json.loads(_dump(3, storage=slots))
    # a slot rewritten at every dump (a ring buffer, a counter) makes the log compact itself
    for n in range(4, 400):
        slots["0x1000"] = hex(n)
        journal.write(_dump(3, storage=slots))
        if journal.storage.path.name != "storage.jsonl":
            break
    assert journal.storage.path.name != "storage.jsonl"  # compacted into a new file
    assert not (tmp_path / "storage.jsonl").exists()  # the old one, once state.json moved on
    assert _loaded(tmp_path) == json.loads(_dump(3, storage=slots))
    # a crash after an append, before state.json: the extra line is ignored, then cut
    with journal.storage.path.open("ab") as f:
        f.write(b'{"0xc0de": {"0x1": "0x')
    assert _loaded(tmp_path) == json.loads(_dump(3, storage=slots))
    slots["0x1000"] = "0x1"
    HistoryJournal(tmp_path).write(_dump(4, storage=slots))
    assert _loaded(tmp_path) == json.loads(_dump(4, storage=slots))


def test_a_journal_shorter_than_the_head_says_is_refused(tmp_path: Path) -> None:
    HistoryJournal(tmp_path).write(_dump(3))
    lines = (tmp_path / "history.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "history.jsonl").write_bytes(b"".join(lines[:-1]))
    with pytest.raises(ValueError, match="holds 2 of the 3 blocks"):
        assemble(tmp_path)


@pytest.mark.chain
async def test_dumps_write_the_new_blocks_not_the_whole_history(tmp_path: Path) -> None:
    async with deployed_chain(tmp_path) as chain:
        devchain = chain.devchain
        contract = chain.client.contract("ReadingAnchor", chain.deployment.address("ReadingAnchor"))
        await devchain.dump()
        whole = 0
        before = devchain.journal.bytes_written
        txs = []
        for n in range(12):
            fn = contract.functions.anchor(secrets.token_bytes(32), 10, n.to_bytes(32, "big"))
            txs.append((await chain.anchorer.transact(fn))["transactionHash"])
            hex_state = await devchain._rpc("anvil_dumpState", raw=True)
            whole += len(bytes.fromhex(hex_state[2:]))  # gzip: what a whole dump weighs, at least
            assert await devchain.dump_if_changed() is True
        assert await devchain.dump_if_changed() is False  # no new block: not even asked
        written = devchain.journal.bytes_written - before
        assert written * 2 < whole, (written, whole)  # even against whole dumps gzipped
        head = devchain.state_file.stat().st_size
        assert head < 20_000, head  # balances and nonces: no code, no storage, no history
        state_dir = devchain.state_dir
        block = await chain.client.block_number()
    restarted = DevChain(state_dir=state_dir, port=free_port(), state_interval=3600)
    await restarted.start()
    try:
        client = await ChainClient.connect(restarted.rpc_url)
        try:
            assert await client.block_number() == block
            for tx in txs:
                receipt = await client.w3.eth.get_transaction_receipt(tx)
                assert receipt["status"] == 1
        finally:
            await client.close()
    finally:
        await restarted.stop()
