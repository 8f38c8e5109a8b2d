"""GET /v1/export/batches and `chainsense export --batches`: every reading of the batches
anchored in a period, as a chainsense.bundle.v2 bundle of complete sections, checked by both
verifiers (a real platform, real Anvil, readings from several devices in several batches)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chainsense.cli import app
from chainsense.identity import DeviceKey
from chainsense.provenance import ProofDocument, verify_proof
from chainsense.provenance import export as export_module
from chainsense.provenance.bundle_v2 import documents
from chainsense.store import BatchRecord, BatchState
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.support import temp_postgres_database

from .conftest import Api, cli_through, make_api, own_anchorer

METER = BUILTIN_SCHEMAS.by_name("chainsense.meter.v1")
ROOT = Path(__file__).parents[2]


@dataclass
class Anchored:
    """The platform after three rounds: batches anchored at two block times, one batch sealed
    and left unanchored, and one reading in no batch."""

    api: Api
    first: list[BatchRecord]
    second: list[BatchRecord]
    sealed: BatchRecord
    unbatched: int

    @property
    def anchored(self) -> list[BatchRecord]:
        return self.first + self.second


def _post(api: Api, key: DeviceKey, seqs: range, *, meter: bool = False) -> list[int]:
    if meter:
        readings = [api.sign(key, s, (1000 + s, s), schema=METER.id) for s in seqs]
    else:
        readings = [api.sign(key, s, (400 + s, 600)) for s in seqs]
    response = api.client.post("/v1/readings", json={"readings": readings})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def _call(api: Api, fn: Any, *args: Any) -> Any:
    assert api.client.portal is not None
    return api.client.portal.call(fn, *args)


def _seal(api: Api, *, anchor: bool) -> list[BatchRecord]:
    """Seal what waits (and anchor it) with an anchorer of the test's own."""
    anchorer = own_anchorer(api.platform)
    sealed = _call(api, anchorer.seal_now)
    if not anchor:
        return list(sealed)
    done = _call(api, anchorer.anchor_sealed)
    assert sorted(b.id for b in done) == sorted(b.id for b in sealed)
    return sorted(done, key=lambda b: b.id)


def _build(api: Api) -> Anchored:
    a, b, c = (DeviceKey.generate() for _ in range(3))
    for key in (a, b, c):
        api.register(key)
    _post(api, a, range(1, 4))
    _post(api, b, range(1, 4), meter=True)  # two schemas in one batch
    _post(api, c, range(1, 3))
    first = _seal(api, anchor=True)  # 8 readings in batches of 4
    time.sleep(1.2)  # the next anchors land in blocks of a later second
    _post(api, a, range(4, 7))
    _post(api, c, range(3, 6))
    _post(api, b, range(4, 5), meter=True)
    second = _seal(api, anchor=True)  # 7 readings: 4 + 3
    _post(api, b, range(5, 7), meter=True)
    (sealed,) = _seal(api, anchor=False)
    (unbatched,) = _post(api, c, range(6, 7))
    assert (len(first), len(second)) == (2, 2)
    assert all(x.block_time is not None for x in first + second)
    assert max(x.block_time or 0 for x in first) < min(x.block_time or 0 for x in second)
    return Anchored(api, first, second, sealed, unbatched)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def anchored(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Anchored]:
    """A platform whose anchorer does not run by itself: the test seals and anchors."""
    data_dir = tmp_path_factory.mktemp("batch-export")
    options: dict[str, Any] = {"anchoring": False, "batch_max_size": 4}
    if request.param == "sqlite":
        for api in make_api(data_dir, **options):
            yield _build(api)
    else:
        with temp_postgres_database() as url:
            for api in make_api(data_dir, url, **options):
                yield _build(api)


def _export(api: Api, **params: int) -> list[str]:
    response = api.client.get("/v1/export/batches", params=params, headers=api.auth("reader"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return response.text.splitlines()


def _sections(lines: list[str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(batch, its proof lines' bodies) per section; every line after the first is one."""
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for line in lines[1:]:
        obj = json.loads(line)
        if line.startswith('{"batch":'):
            out.append((obj["batch"], []))
        else:
            assert set(obj) == {"proof"}, line  # no pending lines
            out[-1][1].append(obj["proof"])
    return out


def test_exportBatches_writesEveryReadingOfEachAnchoredBatch_asCompleteSections(
    anchored: Anchored,
) -> None:
    api = anchored.api
    batches = api.platform.store.batches
    lines = _export(api)
    assert lines[0] == '{"format":"chainsense.bundle.v2"}'
    sections = _sections(lines)
    assert [int(batch["batch_id"]) for batch, _ in sections] == [b.id for b in anchored.anchored]
    for (batch, proofs), record in zip(sections, anchored.anchored, strict=True):
        assert batch["complete"] is True
        assert batch["root"] == "0x" + record.root.hex()
        assert batch["anchor"]["block_hash"] == "0x" + (record.block_hash or b"").hex()
        members = [rid for rid, _ in _call(api, batches.struct_hashes, record.id)]
        assert [int(p["reading_id"]) for p in proofs] == members  # the whole batch, by id
        assert all(p["merkle_proof"] is None for p in proofs)
        named = {p["reading"]["schema"] for p in proofs}
        assert {s["id"] for s in batch["schemas"]} == named
    assert any(len(batch["schemas"]) == 2 for batch, _ in sections)
    exported = {int(p["reading_id"]) for _, proofs in sections for p in proofs}
    assert len(exported) == 15
    assert anchored.unbatched not in exported  # in no batch: left out
    sealed = {rid for rid, _ in _call(api, batches.struct_hashes, anchored.sealed.id)}
    assert sealed
    assert not sealed & exported  # sealed, not anchored: left out
    assert _call(api, batches.get, anchored.sealed.id).state is BatchState.SEALED

    # each rebuilt document is the one the platform serves for that reading, path included
    docs = [d for d in documents(lines) if isinstance(d, ProofDocument)]
    assert len(docs) == 15
    for doc in docs:
        assert verify_proof(doc.proof, doc.root, doc.leaf)
        served = api.client.get(f"/v1/readings/{doc.reading_id}/proof", headers=api.auth("reader"))
        assert served.status_code == 200
        assert doc.to_json() == served.json()


def test_exportBatches_keepsTheBatchesAnchoredInTheRange_byBlockTimeInMs(
    anchored: Anchored,
) -> None:
    api = anchored.api
    t2 = min(b.block_time or 0 for b in anchored.second) * 1000

    def ids(**params: int) -> list[int]:
        return [int(batch["batch_id"]) for batch, _ in _sections(_export(api, **params))]

    first, second = [b.id for b in anchored.first], [b.id for b in anchored.second]
    assert ids(since=t2) == second
    assert ids(since=t2 - 999) == second  # block times are whole seconds: rounds up
    assert ids(until=t2) == first
    assert ids(until=t2 + 1) == first + second
    assert ids(since=t2, until=t2 + 1) == [
        b.id for b in anchored.second if (b.block_time or 0) * 1000 == t2
    ]
    assert _export(api, since=2**62) == ['{"format":"chainsense.bundle.v2"}']
    bad = api.client.get("/v1/export/batches", params={"since": -1}, headers=api.auth("reader"))
    assert bad.status_code == 422
    assert api.client.get("/v1/export/batches").status_code == 401


def test_exportBatches_pagesThroughBatchesAndReadings_withTheSameBytes(
    anchored: Anchored, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages smaller than a batch (and one batch per page of batches) give the same bundle."""
    whole = _export(anchored.api)
    monkeypatch.setattr(export_module, "_PAGE", 3)
    monkeypatch.setattr(export_module, "_BATCH_PAGE", 1)
    assert _export(anchored.api) == whole


def _js(*args: str) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "Node.js is required (make install)"
    done = subprocess.run(
        [node, str(ROOT / "verifier-js" / "cli.js"), *args, "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


@pytest.mark.node
def test_cliExportBatches_verifiesInBothVerifiers_andAnAlteredReadingFails(
    anchored: Anchored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = anchored.api
    env = cli_through(api, monkeypatch, scope="reader")
    runner = CliRunner()
    out = tmp_path / "batches.jsonl"
    done = runner.invoke(app, ["export", "--batches", "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    assert "4 batches, 15 proofs (complete sections)" in done.stderr
    assert out.read_text().splitlines() == _export(api)
    t2 = min(b.block_time or 0 for b in anchored.second) * 1000
    ranged = tmp_path / "second.jsonl"
    done = runner.invoke(
        app, ["export", "--batches", "--since", str(t2), "--out", str(ranged)], env=env
    )
    assert done.exit_code == 0, done.output
    assert "2 batches, 7 proofs" in done.stderr
    for wrong in (
        ["export", "--out", str(out)],
        ["export", "--batches", "--device", "0x" + "11" * 20, "--out", str(out)],
        ["export", "--batches", "--format", "csv", "--out", str(out)],
        ["export", "--batches", "--since", "5", "--until", "5", "--out", str(out)],
    ):
        refused = runner.invoke(app, wrong, env=env)
        assert refused.exit_code == 2, (wrong, refused.output)
    nowhere = tmp_path / "refused.jsonl"
    bad_key = env | {"CHAINSENSE_API_KEY": "cs_000000000000_" + "x" * 43}
    refused = runner.invoke(app, ["export", "--batches", "--out", str(nowhere)], env=bad_key)
    assert refused.exit_code == 2, refused.output
    assert "CHAINSENSE_API_KEY" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batches.jsonl", "second.jsonl"]

    deployment = tmp_path / "deployment.json"
    deployment.write_text(api.client.get("/v1/deployment").text)
    hashes = tmp_path / "block-hashes.txt"
    hashes.write_text("".join("0x" + (b.block_hash or b"").hex() + "\n" for b in anchored.anchored))
    rpc = api.platform.chain.client.rpc_url
    pinned = ["--deployment", str(deployment)]

    def verify(path: Path, *trust: str) -> tuple[int, dict[str, Any]]:
        got = runner.invoke(app, ["verify", str(path), *pinned, *trust, "--json"])
        return got.exit_code, json.loads(got.stdout)

    for trust in (["--rpc", rpc], ["--block-hash", str(hashes)]):
        code, summary = verify(out, *trust)
        assert code == 0, summary
        assert (summary["total"], summary["valid"]) == (15, 15), summary
    code, theirs = _js(str(out), *pinned, "--block-hash", str(hashes))
    assert code == 0, theirs
    assert (theirs["total"], theirs["valid"]) == (15, 15), theirs

    # the order of a section's proof lines does not matter: the tree sorts its leaves
    lines = out.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith('{"batch":')]
    shuffled = list(lines)
    shuffled[starts[1] + 1 : starts[2]] = reversed(lines[starts[1] + 1 : starts[2]])
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text("".join(line + "\n" for line in shuffled))
    assert verify(reordered, "--block-hash", str(hashes))[0] == 0

    # a reading altered in the file: its line fails signature and merkle-path, the rest of
    # its section merkle-path (the section no longer builds the anchored root)
    at = starts[2] + 2
    obj = json.loads(lines[at])
    obj["proof"]["reading"]["values"][0] = str(int(obj["proof"]["reading"]["values"][0]) + 1)
    altered = list(lines)
    altered[at] = json.dumps(obj, separators=(",", ":"))
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(line + "\n" for line in altered))
    size = (starts[3] if len(starts) > 3 else len(lines)) - starts[2] - 1
    for code, summary in (
        verify(tampered, "--block-hash", str(hashes)),
        _js(str(tampered), *pinned, "--block-hash", str(hashes)),
    ):
        assert code == 1, summary
        assert (summary["valid"], summary["invalid"]) == (15 - size, size), summary
        (line,) = [f for f in summary["failures"] if f["line"] == at + 1]
        assert sorted(line["checks"]) == ["merkle-path", "signature"], line
        others = [f for f in summary["failures"] if f["line"] != at + 1]
        assert all(f["checks"] == ["merkle-path"] for f in others), others
    # a reading left out of its section: the section fails merkle-path
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("".join(line + "\n" for i, line in enumerate(lines) if i != at))
    code, summary = verify(dropped, "--block-hash", str(hashes))
    assert code == 1
    assert summary["failed_checks"] == {"merkle-path": size - 1}, summary


def test_verifySince_failsABundleThatLeavesOutABatchAnchoredInThePeriod(
    anchored: Anchored, tmp_path: Path
) -> None:
    """`chainsense verify --rpc --since --until` asks the pinned ReadingAnchor which roots it
    logged in the period's blocks: a section dropped from the bundle, or an export of a
    narrower period, names each batch left out; batches outside the period are a note."""
    api = anchored.api
    runner = CliRunner()
    deployment = tmp_path / "deployment.json"
    deployment.write_text(api.client.get("/v1/deployment").text)
    rpc = api.platform.chain.client.rpc_url
    lines = _export(api)
    t1 = min(b.block_time or 0 for b in anchored.first) * 1000
    t2 = min(b.block_time or 0 for b in anchored.second) * 1000

    def verify(kept: list[str], *period: str) -> tuple[int, dict[str, Any], str]:
        path = tmp_path / "bundle.jsonl"
        path.write_text("".join(line + "\n" for line in kept))
        args = ["verify", str(path), "--deployment", str(deployment), "--rpc", rpc, *period]
        got = runner.invoke(app, [*args, "--json"])
        text = runner.invoke(app, args).stdout
        return got.exit_code, json.loads(got.stdout), text

    whole = ["--since", str(t1), "--until", str(t2 + 1000)]
    code, summary, text = verify(lines, *whole)
    assert code == 0, summary
    cover = summary["coverage"]
    assert (cover["ok"], cover["anchored_in_period"], cover["missing"]) == (True, 4, []), cover
    assert "holds every batch anchored in the period" in text

    # one section (a batch line and its proofs) left out: the proofs left all verify
    starts = [i for i, line in enumerate(lines) if line.startswith('{"batch":')]
    withheld = anchored.anchored[1]
    dropped = lines[: starts[1]] + lines[starts[2] :]
    code, summary, text = verify(dropped, *whole)
    assert code == 1, summary
    assert summary["invalid"] == 0
    assert summary["ok"] is False
    (missing,) = summary["coverage"]["missing"]
    assert missing == {"root": "0x" + withheld.root.hex(), "block": withheld.block_number}
    assert f"missing: batch root 0x{withheld.root.hex()}" in text
    assert "INVALID: the bundle does not hold every batch" in text

    # an export of the second period checked against both: the first period's batches missing
    second = _export(api, since=t2)
    code, summary, _ = verify(second, "--since", str(t1))
    assert code == 1
    missing_roots = {m["root"] for m in summary["coverage"]["missing"]}
    assert missing_roots == {"0x" + b.root.hex() for b in anchored.first}
    code, summary, _ = verify(second, "--since", str(t2))
    assert code == 0, summary
    # the whole export checked against the second period only: the first batches are a note
    code, summary, _ = verify(lines, "--since", str(t2))
    assert code == 0, summary
    assert summary["coverage"]["in_bundle_outside_period"] == 2

    # the period needs the chain and the pins
    path = tmp_path / "bundle.jsonl"
    refused = runner.invoke(app, ["verify", str(path), "--since", str(t1)])
    assert refused.exit_code == 2
    assert "need --rpc URL and --deployment" in refused.stderr
