"""chainsense.strictjson: property tests (hypothesis) and the crash that motivated it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainsense.strictjson import JSONBodyError, loads, max_depth_of

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=30,
)


CODES = {
    "malformed-json",
    "invalid-utf8",
    "too-deep",
    "duplicate-key",
    "lone-surrogate",
    "number-too-long",
    "invalid-number",
}


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(VALUES, st.booleans())
def test_valid_json_parses_to_what_json_dumps_wrote(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert max_depth_of(raw) == depth(value)
    assert loads(raw, max_depth=200) == value


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_any_bytes_parse_or_raise_only_a_body_error(raw: bytes) -> None:
    refusal: JSONBodyError | None = None
    try:
        value = loads(raw, max_depth=3)
    except JSONBodyError as exc:
        refusal = exc
    if refusal is None:
        assert depth(value) <= 3
    else:
        assert refusal.code in CODES
        assert refusal.detail


@given(VALUES)
def test_the_depth_limit_is_exact(value: Any) -> None:
    raw = json.dumps(value).encode()
    d = depth(value)
    if d >= 1:
        with pytest.raises(JSONBodyError) as refused:
            loads(raw, max_depth=d - 1)
        assert refused.value.code == "too-deep"
    assert loads(raw, max_depth=d) == value


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (b'{"a": 1, "b": {"c": 2, "c": 3}}', "duplicate-key", "c"),
        (b'["\\ud800"]', "lone-surrogate", "[0]"),
        (b'{"k": ["ok", "\\udfff"]}', "lone-surrogate", "k[1]"),
        (b'"\\ud800\\ud800"', "lone-surrogate", "(body)"),
        (b"\x80", "invalid-utf8", None),
        (b"[Infinity]", "invalid-number", None),
        (b"[4.1e918446744073709551615]", "invalid-number", None),  # found by the fuzzer
        (b"[1e-999999999999999999999]", "invalid-number", None),
        (b"1" * 101, "number-too-long", None),
        (b"[" * 33 + b"]" * 33, "too-deep", None),
    ],
)
def test_refusals_name_the_cause(raw: bytes, code: str, field: str | None) -> None:
    with pytest.raises(JSONBodyError) as refused:
        loads(raw)
    assert (refused.value.code, refused.value.field) == (code, field)


def test_a_paired_surrogate_escape_is_one_character() -> None:
    assert loads(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_brackets_inside_strings_do_not_count() -> None:
    assert max_depth_of(b'["[[[[", "\\"[[[", {"a": "}}}"}]') == 2


def test_a_million_brackets_with_a_raised_recursion_limit_do_not_crash_the_process() -> None:
    """What killed the server: py_ecc sets the recursion limit to 100,000, so the C parser
    overflows the stack before any RecursionError. Run in a child process, as that crash would
    take pytest with it."""
    script = (
        "import sys; sys.setrecursionlimit(10**6)\n"
        "from chainsense.strictjson import JSONBodyError, loads\n"
        "for body in (b'[' * 10**6, b'{\"a\":' * 10**6, b'[' * 10**6 + b']' * 10**6):\n"
        "    try:\n"
        "        loads(body)\n"
        "    except JSONBodyError as exc:\n"
        "        assert exc.code == 'too-deep', exc.code\n"
        "print('alive')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive"
