"""Strict JSON for JOSE headers and claims (RFC 7493 I-JSON, RFC 7515 §4, R3, R11).

Parsing refuses invalid UTF-8, a byte-order mark, duplicate member names, NaN/Infinity, numbers outside the
IEEE-754 double range, unpaired surrogates and nesting deeper than :data:`MAX_DEPTH`; the result must be an
object. Encoding uses orjson (compact, UTF-8).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "dumps", "loads_object"]

#: Deepest allowed nesting of objects and arrays (R3).
MAX_DEPTH = 16

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # RFC 7515 §4 / RFC 7519 §4: duplicate member names MUST be rejected.
        raise ValueError("duplicate member name")
    return result


def _constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 parses as inf: out of the double range (RFC 7493 §2.2).
        raise ValueError("number out of range")
    return value


_orjson_loads = orjson.loads
_orjson_dumps = orjson.dumps
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)


def _too_deep(value: Any) -> bool:
    # Walks the parsed value without recursion; the parse itself was linear (a regex over the raw text that
    # skips strings is quadratic on crafted input such as '"\\"\\"...', so the depth is measured here).
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def loads_object(data: bytes) -> dict[str, Any]:
    """Parse ``data`` as a strict JSON object; raise ``ValueError`` for anything else.

    ``RecursionError``, ``UnicodeDecodeError`` and ``json.JSONDecodeError`` are all ``ValueError`` here.
    """
    # Fast path: orjson refuses invalid UTF-8, a BOM, NaN/Infinity, out-of-range numbers and lone surrogates,
    # but keeps the last of duplicate names. When its output is byte-equal to the input, nothing was dropped
    # (a duplicate would make it shorter), so the text was strict; only the nesting is left to bound.
    try:
        value = _orjson_loads(data)
    except ValueError:
        value = None
    if (
        type(value) is dict
        and _orjson_dumps(value) == data
        and data.count(b"{") + data.count(b"[") <= MAX_DEPTH
    ):
        return value
    return _strict_loads_object(data)


def _strict_loads_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    try:
        # No BOM: JSONDecoder.decode does not skip U+FEFF, so a BOM fails as "Expecting value". Nesting past
        # the interpreter's recursion limit stops the (linear) parse with RecursionError.
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError("nesting too deep") from None
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    # Cheap pre-check: only texts with many brackets can be deep.
    if text.count("{") + text.count("[") > MAX_DEPTH and _too_deep(value):
        raise ValueError("nesting too deep")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        # Escaped pairs combine into one character; what still fails to encode is a lone surrogate
        # (RFC 7493 §2.1).
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("unpaired surrogate") from None
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; raises ``TypeError`` for values JSON cannot carry."""
    return orjson.dumps(value)
