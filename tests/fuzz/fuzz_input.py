"""A coverage-guided fuzzer (atheris / libFuzzer) over request body parsing and reading
validation: :func:`chainsense.telemetry.ingest.parse_body` then the pipeline's checks (shape,
schema, ranges, SenML, signature recovery, registry), everything that runs before the store.

Run as its own process (atheris instruments the code it imports; that must not leak into
pytest): ``python tests/fuzz/fuzz_input.py -dict=tests/fuzz/json.dict [libFuzzer flags] CORPUS_DIR
tests/fuzz/seeds``.
``tests/fuzz/test_fuzz_input.py`` runs it for ~20 s in ``make test``; ``make fuzz`` for longer.

What must hold for every input: parsing raises nothing but a ``BodyError``; every refusal is a
4xx problem whose type is in the catalogue (so its page exists), whose message is short, holds
no Python words and encodes as UTF-8; every accepted reading is within the ranges docs/input.md
states.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports(
    include=["chainsense.strictjson", "chainsense.telemetry", "chainsense.identity.reading"]
):
    from chainsense.chain.registry import DeviceState
    from chainsense.identity import ReadingVerifier
    from chainsense.telemetry.ingest import BodyError, IngestPipeline, Rejection, parse_body
    from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

from chainsense.api.problems import PROBLEM_TYPES

CHAIN_ID = 31337
#: The DeviceRegistry address of a fresh dev chain (deployer = Anvil dev account 0).
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NOW_MS = 1_763_700_000_000
PYTHON_WORDS = ("Decimal", "NoneType", "Traceback", "sys.", "<class", "dict", "int_max_str")
#: What a problem echoes of the client's input: a detail quotes it as a JSON string
#: (strictjson.quote), and ``field`` is the path of the client's own keys. Python's words are
#: looked for in the rest only (a fuzzed key "edictamp" echoed as the field is not a leak).
ECHOED = re.compile(r'"(?:[^"\\]|\\.)*"')
SEEDS = Path(__file__).parent / "seeds"


class AnyDeviceIsActive:
    """The registry, for the fuzzer: every key is registered and active, except one revoked."""

    REVOKED = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

    def get(self, key: str) -> DeviceState:
        status = "revoked" if key == self.REVOKED else "active"
        return DeviceState(key, key, key, "0x" + "00" * 32, status, datetime.now(UTC))


PIPELINE = IngestPipeline(
    store=None,  # type: ignore[arg-type]  # the checks never touch it
    verifier=ReadingVerifier(CHAIN_ID, CONTRACT),
    registry=AnyDeviceIsActive(),  # type: ignore[arg-type]
    schemas=BUILTIN_SCHEMAS,
    clock=lambda: NOW_MS / 1000,
    committer=object(),  # type: ignore[arg-type]  # nor the commit path
)


def check(rejection: Rejection) -> None:
    assert 400 <= rejection.status < 500, rejection
    assert rejection.code in PROBLEM_TYPES, rejection.code
    problem = rejection.problem()
    text = json.dumps(problem, ensure_ascii=False)
    text.encode("utf-8")  # raises on a lone surrogate
    assert len(text) < 1500, text[:200]
    detail = ECHOED.sub("''", str(problem["detail"]))
    ours = f"{problem['title']} {detail}"
    for word in PYTHON_WORDS:
        assert word not in ours, (word, text)


def one_input(data: bytes) -> None:
    try:
        items, _ = parse_body(data, max_batch=64)
    except BodyError as exc:
        check(exc.rejection)
        return
    results, rows, _ = PIPELINE._check_all(items, NOW_MS)
    for result in results:
        if result is not None:
            assert result.error is not None
            check(result.error)
            assert result.device is None or len(result.device) == 42
    for row in rows:
        assert 1 <= row.seq < 2**63
        assert 0 <= row.timestamp <= NOW_MS + PIPELINE.max_future_ms
        assert all(-(2**63) <= v < 2**63 for v in row.values)


def make_seeds() -> None:
    """Write the seed corpus: valid signed readings (both forms, a batch) and near misses."""
    from chainsense.identity import DeviceKey, Reading

    key = DeviceKey(bytes.fromhex("11" * 32))
    cold = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1")
    SEEDS.mkdir(exist_ok=True)

    def signed(seq: int, values: tuple[int, ...]) -> dict[str, object]:
        reading = Reading(key.address, seq, NOW_MS - 1000, cold.id, values)
        signature = key.sign(reading, CHAIN_ID, CONTRACT)
        return reading.to_json() | {"signature": "0x" + signature.hex()}

    raw = signed(1, (415, 620))
    senml = {k: raw[k] for k in ("device", "seq", "timestamp", "signature")} | {
        "schema": "chainsense.coldchain.v1",
        "senml": [{"n": "temperature", "u": "Cel", "v": 4.15}, {"n": "humidity", "v": 62}],
    }
    seeds = {
        "raw.json": raw,
        "senml.json": senml,
        "batch.json": {"readings": [raw, signed(2, (-1850, 955)), senml]},
        "strings.json": raw | {"seq": "1", "timestamp": str(NOW_MS - 1000)},
    }
    for name, body in seeds.items():
        (SEEDS / name).write_text(json.dumps(body), encoding="utf-8")
    (SEEDS / "dup.json").write_text('{"a": [1, {"b": "\\ud83d\\ude00"}], "a": 2}')


if __name__ == "__main__":
    if sys.argv[1:] == ["--make-seeds"]:
        make_seeds()
    else:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
