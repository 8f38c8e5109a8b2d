"""Bundle verification on a process pool (more lines than one chunk): the results come back in
order, a bad line is named by its number, each distinct block counted once."""

from __future__ import annotations

import json

from chainsense.provenance.bundle import trusted_judge, verify_lines
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
