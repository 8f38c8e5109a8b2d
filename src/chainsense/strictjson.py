"""Strict JSON for request bodies: one parser that no input can crash or make ambiguous.

:func:`loads` accepts exactly RFC 8259 JSON in UTF-8 and refuses, with a :class:`JSONBodyError`
naming the cause (and the key, where there is one):

- ``invalid-utf8``: bytes that are not UTF-8 (encoded surrogates included); no UTF-16/32 guessing;
- ``too-deep``: arrays/objects nested deeper than ``max_depth``. The depth is measured by a scan
  of the bytes *before* parsing, so the recursive parser never goes deeper than ``max_depth``
  (never relying on Python's recursion limit, which a dependency raises to 100,000: a body of
  100,000 ``[`` then overflows the C stack and the process dies);
- ``duplicate-key``: an object with the same key twice (parsers disagree on which one wins);
- ``lone-surrogate``: a ``\\ud800``-style escape that is not half of a pair (not a character,
  cannot be stored or echoed as UTF-8);
- ``number-too-long``: a number token longer than ``max_number_chars`` (Python refuses to convert
  integers past 4,300 digits, and no field of this API needs more than 78);
- ``invalid-number``: ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON), and an exponent past
  what a decimal can hold (``1e918446744073709551615``, found by the fuzzer);
- ``malformed-json``: anything else the JSON grammar refuses.

Fractions and exponents parse to :class:`~decimal.Decimal` (exact; never a float), integers to
``int``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from itertools import accumulate
from typing import Any

__all__ = ["DEFAULT_MAX_DEPTH", "JSONBodyError", "loads", "quote"]

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_NUMBER_CHARS = 100

# A JSON string, possessive so that no input makes the scan backtrack, or an unterminated one
# (to the end of the body), so that every quote starts a match and the scan stays linear. In a
# valid JSON prefix it matches exactly the strings the parser sees; the parser stops with an error
# at the first unterminated string, so what follows it is never parsed and may be dropped. So the
# depth measured is never below what the parser can reach.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONBodyError(ValueError):
    """A body that is not strict JSON. ``code`` is the problem type, ``field`` the key involved
    (for a duplicate key or a lone surrogate), ``detail`` a sentence for people."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field


def quote(text: str, limit: int = 40) -> str:
    """``text`` as a short, escaped JSON string, for echoing input safely in a message."""
    shown = text if len(text) <= limit else text[:limit] + "\u2026"
    return json.dumps(shown, ensure_ascii=True)


def max_depth_of(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in ``raw``, not counting brackets inside strings."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    opened = brackets.count(b"[") + brackets.count(b"{")
    if opened <= 1:
        return opened
    return max(accumulate(memoryview(brackets.translate(_DELTA)).cast("b")))


def loads(
    raw: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_chars: int = DEFAULT_MAX_NUMBER_CHARS,
) -> Any:
    """Parse ``raw`` as strict JSON (see the module docstring) or raise :class:`JSONBodyError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONBodyError(
            "invalid-utf8", f"the body is not valid UTF-8 (byte {exc.start} cannot be decoded)"
        ) from None
    depth = max_depth_of(raw)
    if depth > max_depth:
        raise JSONBodyError(
            "too-deep",
            f"arrays and objects are nested {depth} deep; at most {max_depth} levels are accepted",
        )

    def number(token: str) -> str:
        if len(token) > max_number_chars:
            raise JSONBodyError(
                "number-too-long",
                f"a number has {len(token)} characters; at most {max_number_chars} are accepted",
            )
        return token

    def parse_int(token: str) -> int:
        return int(number(token))

    def parse_float(token: str) -> Decimal:
        try:
            return Decimal(number(token))
        except ArithmeticError:  # InvalidOperation: an exponent past what Decimal can hold
            raise JSONBodyError(
                "invalid-number", f"the number {token[:40]} has an exponent out of range"
            ) from None

    def parse_constant(token: str) -> Any:
        raise JSONBodyError("invalid-number", f"{token} is not a JSON number")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    raise JSONBodyError(
                        "duplicate-key",
                        f"the key {quote(key)} appears twice in one object; each key may appear "
                        "once",
                        _field_name(key),
                    )
                seen.add(key)
        return obj

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=parse_constant,
        )
    except json.JSONDecodeError as exc:
        message = exc.msg[:1].lower() + exc.msg[1:].removesuffix(" at")
        raise JSONBodyError(
            "malformed-json",
            f"the body is not valid JSON: {message} at line {exc.lineno}, column {exc.colno}",
        ) from None
    except RecursionError:  # unreachable with a sane max_depth; never a crash if it is not
        raise JSONBodyError("too-deep", "arrays and objects are nested too deep") from None
    if _SURROGATE_ESCAPE.search(raw):
        path = _lone_surrogate(value)
        if path is not None:
            raise JSONBodyError(
                "lone-surrogate",
                "a string holds a \\uD800-\\uDFFF escape that is not half of a surrogate pair "
                "(not a character)",
                path,
            )
    return value


def _field_name(key: str) -> str:
    return key if not _SURROGATE.search(key) and len(key) <= 64 else quote(key)


def _lone_surrogate(value: Any) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path or "(body)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"{path}.(key)" if path else "(key)"
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None
