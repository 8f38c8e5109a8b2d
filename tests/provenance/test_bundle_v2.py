"""The bundle format chainsense.bundle.v2 (batch lines + proof lines): it round-trips the v2
documents, every tampering of the shared vectors fails in bundle form naming the same checks,
a tampered batch line fails every proof of its section naming the check, and malformed lines
are refused naming the field, whether the fast path or the strict parser reads them and
whatever byte ranges the workers are given."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from chainsense.provenance import bundle
from chainsense.provenance.bundle import BundleResult, trusted_judge, verify_file, verify_lines
from chainsense.provenance.bundle_v2 import batch_offsets, bundle_lines, documents, keep_whole
from chainsense.provenance.proof import ProofDocument, ProofFormatError
from tests.provenance.test_vectors import FILES, PINS, TRUSTED, VECTORS


def _doc(name: str) -> ProofDocument:
    return ProofDocument.from_json(json.loads((VECTORS / f"{name}.json").read_text())["proof"])


VALID = [_doc(f"valid-{i}") for i in range(7)]


def _check(lines: list[str], tmp_path: Path, **kwargs: Any) -> BundleResult:
    """verify_lines and verify_file (by ranges of ~2 kB, so sections are cut) must agree."""
    options: dict[str, Any] = {"pins": PINS, "block": trusted_judge(TRUSTED), **kwargs}
    in_memory = verify_lines(lines, workers=1, **options)
    path = tmp_path / "bundle.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    ranges = bundle.file_ranges
    try:
        setattr(bundle, "file_ranges", lambda p, size=2048: ranges(p, size))  # noqa: B010
        from_file = verify_file(str(path), workers=2, **options)
    finally:
        setattr(bundle, "file_ranges", ranges)  # noqa: B010
    assert from_file.to_json() == in_memory.to_json()
    return from_file


def test_aBundle_roundTripsTheV2Documents_andVerifies(tmp_path: Path) -> None:
    lines = list(bundle_lines([*VALID, {"status": "pending", "reading_id": 9}, *VALID]))
    assert lines[0] == '{"format":"chainsense.bundle.v2"}'
    back = list(documents(lines))
    assert [d.to_json() if isinstance(d, ProofDocument) else d for d in back] == [
        *[d.to_json() for d in VALID],
        {"status": "pending", "reading_id": 9},
        *[d.to_json() for d in VALID],
    ]
    # the proof lines carry no anchor, header or schema: they are small
    proof_lines = [x for x in lines if x.startswith('{"proof":')]
    assert len(proof_lines) == 14
    assert max(len(x) for x in proof_lines) < 700 < min(len(x) for x in lines[1:2])
    result = _check(lines * 1, tmp_path)
    assert (result.total, result.counts["valid"], result.counts["pending"]) == (15, 14, 1)
    assert result.blocks == 1


def test_batchOffsets_findEveryBatchLine(tmp_path: Path) -> None:
    lines = list(bundle_lines(VALID))
    path = tmp_path / "b.jsonl"
    path.write_text("".join(x + "\n" for x in lines))
    data = path.read_bytes()
    offsets = batch_offsets(str(path))
    assert offsets
    assert all(data[o : o + 9] == b'{"batch":' for o in offsets)
    assert len(offsets) == sum(x.startswith('{"batch":') for x in lines)


def _bundle_expectation(name: str, expect: dict[str, Any]) -> tuple[str, list[str]]:
    """What the bundle form of a vector gives. A proof line carries no struct_hash and no
    leaf: the verifier computes both, so tampering only those leaves nothing to fail, and a
    reading altered in bundle form fails ``merkle-path`` (its computed leaf is in no tree)
    where the v2 document fails ``leaf``."""
    if name in ("leaf", "struct-hash"):
        return "valid", []
    failed = set(expect["failed"])
    if "leaf" in failed:
        failed = (failed - {"leaf"}) | {"merkle-path"}
    if failed:
        return "invalid", sorted(failed)
    if expect["unchecked"]:
        return "incomplete", sorted(expect["unchecked"])
    return "valid", []


CHECKED = [
    p for p in FILES if json.loads(p.read_text())["expect"]["status"] != "malformed"
]  # fmt: skip


@pytest.mark.parametrize("path", CHECKED, ids=[p.stem for p in CHECKED])
def test_everyVector_inBundleForm_failsNamingTheSameChecks(path: Path, tmp_path: Path) -> None:
    vector = json.loads(path.read_text())
    doc = ProofDocument.from_json(vector["proof"])
    options = vector["options"]
    # the tampered proof between two valid ones of other sections (other roots, same block)
    lines = list(bundle_lines([VALID[0], doc, VALID[1]]))
    result = _check(
        lines,
        tmp_path,
        pins=PINS if options["pinned"] else None,
        block=trusted_judge(TRUSTED if options["trusted_blocks"] else None),
    )
    status, checks = _bundle_expectation(path.stem, vector["expect"])
    assert result.total == 3
    if status == "valid":
        assert result.ok, result.to_json()
        return
    assert result.counts[status] >= 1
    bad = [f for f in result.failures if f["status"] == status]
    assert sorted(bad[0]["checks"]) == checks, result.to_json()


def _section(lines: list[str]) -> tuple[dict[str, Any], int]:
    index = next(i for i, x in enumerate(lines) if x.startswith('{"batch":'))
    return json.loads(lines[index]), index


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _tamper_batch(change: Any) -> list[str]:
    lines = list(bundle_lines(VALID[:6]))  # one section: one batch line, then six proofs
    batch, index = _section(lines)
    change(batch["batch"])
    lines[index] = _dump(batch)
    return lines


def _header_byte(b: dict[str, Any]) -> None:
    text = b["anchor"]["header_rlp"]
    b["anchor"]["header_rlp"] = text[:40] + ("0" if text[40] != "0" else "1") + text[41:]


def _scale(b: dict[str, Any]) -> None:
    b["schemas"][0]["metrics"][0]["scale"] = "1"


def _root(b: dict[str, Any]) -> None:
    b["root"] = "0x" + "11" * 32


def _contract(b: dict[str, Any]) -> None:
    b["anchor"]["contract"] = "0x" + "22" * 20


def _trie_node(b: dict[str, Any]) -> None:
    node = b["anchor"]["receipt_proof"][0]
    b["anchor"]["receipt_proof"][0] = node[:-2] + ("00" if node[-2:] != "00" else "01")


def _domain_name(b: dict[str, Any]) -> None:
    b["domain"]["name"] = "ChainSense2"


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (_header_byte, ["header"]),
        (_scale, ["schema"]),
        (_root, ["merkle-path", "receipt"]),
        (_contract, ["contracts", "receipt"]),
        (_trie_node, ["receipt"]),
        (_domain_name, ["domain"]),
    ],
    ids=["header-byte", "schema-scale", "root", "anchor-contract", "trie-node", "domain-name"],
)
def test_aTamperedBatchLine_failsEveryProofOfItsSection(
    change: Any, failed: list[str], tmp_path: Path
) -> None:
    result = _check(_tamper_batch(change), tmp_path)
    assert result.counts["invalid"] == 6, result.to_json()
    assert all(sorted(f["checks"]) == failed for f in result.failures)
    assert [f["line"] for f in result.failures] == [3, 4, 5, 6, 7, 8]


def _tamper_proof(index: int, change: Any) -> list[str]:
    lines = list(bundle_lines(VALID[:6]))
    obj = json.loads(lines[index])
    change(obj["proof"])
    lines[index] = _dump(obj)
    return lines


def _flip(text: str, at: int) -> str:
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :]


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (lambda p: p["reading"].update(values=["4151", *p["reading"]["values"][1:]]),
         ["merkle-path", "signature"]),
        (lambda p: p["reading"].update(seq="99"), ["merkle-path", "signature"]),
        (lambda p: p["reading"].update(signature=_flip(p["reading"]["signature"], 10)),
         ["signature"]),
        (lambda p: p.update(merkle_proof=_flip(p["merkle_proof"], 5)), ["merkle-path"]),
        (lambda p: p.update(merkle_proof=p["merkle_proof"][:-64]), ["merkle-path"]),
        (lambda p: p["reading"].update(schema="0x" + "33" * 32),
         ["merkle-path", "schema", "signature"]),
    ],
    ids=["value", "seq", "signature", "path-byte", "path-step-dropped", "schema-id"],
)  # fmt: skip
def test_aTamperedProofLine_failsNamingTheCheck(
    change: Any, failed: list[str], tmp_path: Path
) -> None:
    result = _check(_tamper_proof(4, change), tmp_path)
    assert (result.counts["valid"], result.counts["invalid"]) == (5, 1), result.to_json()
    assert result.failures[0]["line"] == 5
    assert sorted(result.failures[0]["checks"]) == failed


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["reading"].update(seq=7), "proof.reading.seq"),
        (lambda p: p["reading"].update(seq="07"), "proof.reading.seq"),
        (lambda p: p["reading"].update(values=["-0", "1"]), "proof.reading.values[0]"),
        (lambda p: p["reading"].update(schema="0X" + p["reading"]["schema"][2:]),
         "proof.reading.schema"),
        (lambda p: p["reading"].update(signature=p["reading"]["signature"][:-2]),
         "proof.reading.signature"),
        (lambda p: p.update(merkle_proof=p["merkle_proof"][:-2]), "proof.merkle_proof"),
        (lambda p: p.update(merkle_proof=" " + p["merkle_proof"]), "proof.merkle_proof"),
        (lambda p: p.update(merkle_proof=[p["merkle_proof"]]), "proof.merkle_proof"),
        (lambda p: p.update(comment="x"), "proof.comment"),
        (lambda p: p.pop("reading_id"), "proof.reading_id"),
        (lambda p: p.update(reading_id=1), "proof.reading_id"),
        (lambda p: p["reading"].update(timestampMs=p["reading"].pop("timestamp_ms")),
         "proof.reading.timestamp_ms"),
    ],
    ids=["seq-number", "seq-leading-zero", "minus-zero", "schema-0X", "signature-short",
         "path-odd", "path-space", "path-list", "unknown-field", "no-reading-id",
         "reading-id-number", "camel-case"],
)  # fmt: skip
def test_aMalformedProofLine_isRefusedNamingTheField(
    change: Any, field: str, tmp_path: Path
) -> None:
    lines = _tamper_proof(4, change)
    with pytest.raises(ProofFormatError) as caught:
        list(documents(lines))
    assert caught.value.field == field
    result = _check(lines, tmp_path)
    assert (result.counts["valid"], result.counts["malformed"]) == (5, 1), result.to_json()
    assert result.failures[0]["line"] == 5
    assert field in result.failures[0]["detail"]


def test_aMalformedBatchLine_makesItsProofsMalformed(tmp_path: Path) -> None:
    lines = _tamper_batch(lambda b: b["anchor"].pop("header_rlp"))
    with pytest.raises(ProofFormatError) as caught:
        list(documents(lines))
    assert caught.value.field == "batch.anchor.header_rlp"
    result = _check(lines, tmp_path)
    assert result.counts["malformed"] == 6
    assert "batch.anchor.header_rlp" in result.failures[0]["detail"]


def test_proofLinesWithoutABatchLine_andABadHeader_areRefused(tmp_path: Path) -> None:
    lines = list(bundle_lines(VALID[:2]))
    orphan = [lines[0], lines[2], lines[1], lines[3]]
    result = _check(orphan, tmp_path)
    assert (result.counts["malformed"], result.counts["valid"]) == (1, 1)
    assert "before any batch line" in result.failures[0]["detail"]
    spaced = [lines[0], lines[1].replace('{"batch":', '{ "batch":', 1), *lines[2:]]
    result = _check(spaced, tmp_path)
    assert result.counts["malformed"] == 3
    wrong = ['{"format":"chainsense.bundle.v3"}', *lines[1:]]
    assert verify_lines(wrong, pins=PINS, block=trusted_judge(TRUSTED)).counts["malformed"] == 4


def _complete(change: Any = None, drop: int | None = None) -> list[str]:
    """The whole batch (the seven valid proofs) as one complete section; ``change`` alters
    the proof line at index 4 (line 5), ``drop`` removes a line."""
    lines = list(bundle_lines(VALID, complete=True))
    if change is not None:
        obj = json.loads(lines[4])
        change(obj["proof"])
        lines[4] = _dump(obj)
    if drop is not None:
        del lines[drop]
    return lines


def test_aCompleteSection_rebuildsTheTree_andVerifies(tmp_path: Path) -> None:
    lines = _complete()
    assert sum(x.startswith('{"batch":') for x in lines) == 1
    assert all(json.loads(x)["proof"]["merkle_proof"] is None for x in lines[2:])
    back = list(documents(lines))
    assert [d.to_json() if isinstance(d, ProofDocument) else d for d in back] == [
        d.to_json() for d in VALID
    ]
    result = _check(lines, tmp_path)  # 2 kB ranges: the section is kept whole
    assert (result.total, result.counts["valid"]) == (7, 7)


def test_aCompleteSection_withAnAlteredReading_failsEveryProofsPath(tmp_path: Path) -> None:
    result = _check(_complete(lambda p: p["reading"].update(seq="99")), tmp_path)
    assert result.counts["invalid"] == 7
    checks = {f["line"]: sorted(f["checks"]) for f in result.failures}
    assert checks.pop(5) == ["merkle-path", "signature"]  # the altered one is named
    assert set(map(tuple, checks.values())) == {("merkle-path",)}
    assert "build the root" in result.failures[0]["detail"]


def test_aCompleteSection_missingAReading_failsEveryProofsPath(tmp_path: Path) -> None:
    result = _check(_complete(drop=5), tmp_path)
    assert result.counts["invalid"] == 6
    assert all(f["checks"] == ["merkle-path"] for f in result.failures)


def test_aCompleteSection_refusesAPath_andANonBooleanFlag(tmp_path: Path) -> None:
    lines = _complete(lambda p: p.update(merkle_proof="0x" + "11" * 32))
    with pytest.raises(ProofFormatError) as caught:
        list(documents(lines))
    assert caught.value.field == "proof.merkle_proof"
    result = _check(lines, tmp_path)
    assert (result.counts["malformed"], result.counts["invalid"]) == (1, 6)
    flag = _complete()
    batch = json.loads(flag[1])
    batch["batch"]["complete"] = "true"
    flag[1] = _dump(batch)
    with pytest.raises(ProofFormatError) as caught:
        list(documents(flag))
    assert caught.value.field == "batch.complete"
    assert _check(flag, tmp_path).counts["malformed"] == 7


def _cases() -> dict[str, list[str]]:
    """Bundles for both verifiers: valid, and each tampering of a batch or a proof line."""
    cases = {"valid": list(bundle_lines([*VALID, {"status": "pending", "reading_id": 1}]))}
    for change, name in ((_header_byte, "header-byte"), (_scale, "schema-scale"),
                         (_root, "root"), (_contract, "anchor-contract"),
                         (_trie_node, "trie-node"), (_domain_name, "domain-name")):  # fmt: skip
        cases[f"batch-{name}"] = _tamper_batch(change)
    cases["proof-seq"] = _tamper_proof(4, lambda p: p["reading"].update(seq="99"))
    cases["proof-path"] = _tamper_proof(
        4, lambda p: p.update(merkle_proof=_flip(p["merkle_proof"], 5))
    )
    cases["proof-signature"] = _tamper_proof(
        4, lambda p: p["reading"].update(signature=_flip(p["reading"]["signature"], 10))
    )
    cases["proof-number"] = _tamper_proof(4, lambda p: p["reading"].update(seq=7))
    cases["proof-packed-odd"] = _tamper_proof(
        4, lambda p: p.update(merkle_proof=p["merkle_proof"][:-2])
    )
    cases["batch-missing-header"] = _tamper_batch(lambda b: b["anchor"].pop("header_rlp"))
    cases["complete"] = _complete()
    cases["complete-seq"] = _complete(lambda p: p["reading"].update(seq="99"))
    cases["complete-dropped"] = _complete(drop=5)
    cases["complete-with-path"] = _complete(lambda p: p.update(merkle_proof="0x" + "11" * 32))
    return cases


@pytest.mark.node
def test_javascriptVerifier_agreesOnEveryBundle(tmp_path: Path) -> None:
    """verifier-js (bundle.js) and the Python verifier on the same v2 bundles: the same
    counts, and the same lines failing the same checks (or malformed, naming the field)."""
    import shutil
    import subprocess

    node = shutil.which("node")
    assert node is not None, "Node.js is required (make install)"
    files = {}
    for name, lines in _cases().items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        files[name] = path
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [node, str(root / "verifier-js" / "bundles.js"), str(VECTORS / "deployment.json"),
         str(VECTORS / "block-hashes.txt"), *map(str, files.values())],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    js = json.loads(done.stdout)
    for name, path in files.items():
        mine = verify_file(str(path), pins=PINS, block=trusted_judge(TRUSTED), workers=1)
        theirs = js[str(path)]
        counts = ("total", "valid", "invalid", "incomplete", "malformed", "pending")
        assert {k: theirs[k] for k in counts} == {k: mine.to_json()[k] for k in counts}, name
        assert [f["line"] for f in theirs["failures"]] == [f["line"] for f in mine.failures]
        for t, m in zip(theirs["failures"], mine.failures, strict=True):
            if m["status"] == "malformed":
                assert t["field"] is not None, (name, t)
                assert t["field"] in m["detail"], (name, t, m)
            else:
                assert t["checks"] == sorted(m["checks"]), (name, t, m)
    assert (js[str(files["valid"])]["valid"], js[str(files["valid"])]["pending"]) == (7, 1)
    assert js[str(files["proof-seq"])]["invalid"] == 1


def test_manySections_onTheProcessPool_inMemoryAndFromAFile(tmp_path: Path) -> None:
    """More lines than one chunk, on two workers: sections with paths are cut anywhere,
    complete ones are kept whole; a tampered proof deep in the bundle is named by its line."""
    paths = list(bundle_lines(VALID * 100))
    complete = _complete()
    lines = [*paths, *[x for _ in range(80) for x in complete[1:]]]
    obj = json.loads(lines[650])
    obj["proof"]["reading"]["seq"] = "99"
    lines[650] = _dump(obj)
    judge = trusted_judge(TRUSTED)
    in_memory = verify_lines(lines, pins=PINS, block=judge, workers=2)
    path = tmp_path / "many.jsonl"
    path.write_text("".join(x + "\n" for x in lines))
    from_file = verify_file(str(path), pins=PINS, block=judge, workers=2)
    assert in_memory.to_json() == from_file.to_json()
    assert in_memory.total == 700 + 80 * 7
    assert (in_memory.counts["valid"], in_memory.counts["invalid"]) == (1259, 1)
    assert in_memory.failures[0]["line"] == 651


def test_keepWhole_movesCutsToBatchLines_soTheWorkersStillShareAFileOfCompleteSections() -> None:
    """A file of complete sections (822 kB each, as 2,000 proofs of the bench) cut in 2 MiB
    ranges: each cut moves back to the batch line of the section it falls in, the ranges stay
    as many, and none cuts a section (merging instead would leave one range: one worker)."""
    size, section, chunk = 41_100_000, 822_000, 1 << 21
    starts = list(range(34, size, section))
    ranges = [(s, min(s + chunk, size)) for s in range(0, size, chunk)]
    out = keep_whole(ranges, starts, [True] * len(starts), size)
    assert len(out) == len(ranges)
    assert out[0][0] == 0
    assert out[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(out))
    assert all(start in starts for start, _ in out[1:])
    # with paths (not complete) the cuts stay where they were
    assert keep_whole(ranges, starts, [False] * len(starts), size) == ranges
