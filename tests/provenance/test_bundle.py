"""Bundle verification on a process pool (more lines than one chunk): the results come back in
order, a bad line is named by its number, each distinct block counted once."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from chainsense.provenance.bundle import (
    file_ranges,
    jsonl_file,
    read_bundle,
    trusted_judge,
    verify_file,
    verify_lines,
)
from tests.provenance.test_vectors import PINS, TRUSTED, VECTORS


def test_aBundleLargerThanAChunk_isCheckedOnTheProcessPool() -> None:
    valid = [
        json.dumps(json.loads((VECTORS / f"valid-{i}.json").read_text())["proof"]) for i in range(7)
    ]
    scale = json.dumps(json.loads((VECTORS / "schema-scale.json").read_text())["proof"])
    lines = valid * 150 + [scale, "{not json", json.dumps({"status": "pending"})]
    seen: list[tuple[int, int]] = []
    result = verify_lines(
        lines,
        pins=PINS,
        block=trusted_judge(TRUSTED),
        workers=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.total == 1053
    assert result.counts["valid"] == 1050
    assert (result.counts["invalid"], result.counts["malformed"], result.counts["pending"]) == (
        1,
        1,
        1,
    )
    assert [f["line"] for f in result.failures] == [1051, 1052, 1053]
    assert result.failures[0]["checks"] == ["schema"]
    assert result.blocks == 1
    assert seen[-1] == (1053, 1053)
    assert not result.ok


def test_aJsonlFile_readByRangesInTheWorkers_givesWhatTheLinesGive(tmp_path: Path) -> None:
    valid = [
        json.dumps(json.loads((VECTORS / f"valid-{i}.json").read_text())["proof"]) for i in range(7)
    ]
    scale = json.dumps(json.loads((VECTORS / "schema-scale.json").read_text())["proof"])
    lines = (
        valid * 100 + [scale, "{not json", ""] + valid * 100 + [json.dumps({"status": "pending"})]
    )
    path = tmp_path / "proofs.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    ranges = file_ranges(str(path), 1 << 16)
    assert len(ranges) > 10
    data = path.read_bytes()
    assert (ranges[0][0], ranges[-1][1]) == (0, len(data))
    assert all(
        a[1] == b[0] and data[a[1] - 1 : a[1]] == b"\n" for a, b in itertools.pairwise(ranges)
    )
    assert jsonl_file(str(path))
    seen: list[tuple[int, int, int]] = []
    judge = trusted_judge(TRUSTED)
    from_file = verify_file(
        str(path), pins=PINS, block=judge, workers=2, progress=lambda *a: seen.append(a)
    )
    from_lines = verify_lines(read_bundle(str(path)), pins=PINS, block=judge, workers=2)
    assert from_file.to_json() == from_lines.to_json()
    assert from_file.total == 1403
    assert [f["line"] for f in from_file.failures] == [701, 702, 1403]
    assert seen[-1] == (1403, len(data), len(data))
    untrusted = verify_file(str(path), pins=PINS, block=trusted_judge(set()), workers=2)
    assert untrusted.counts["invalid"] == 1401
    assert (untrusted.failed_checks["block"], untrusted.failed_checks["schema"]) == (1401, 1)
    assert [f["line"] for f in untrusted.failures[:3]] == [1, 2, 3]


def test_aPrettyPrintedDocument_isNotReadByRanges(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(
        json.dumps(json.loads((VECTORS / "valid-0.json").read_text())["proof"], indent=2)
    )
    assert not jsonl_file(str(path))
    assert len(read_bundle(str(path))) == 1
