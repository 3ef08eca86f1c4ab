"""Reusable helpers of the tool-call parser framework (re-exported by ``herder.parsers.tools.base``, where
the ``ToolParser`` API and its streaming engine live; see that module's docstring).

* ``normalize_tools(tools)``: OpenAI / flat tool dicts -> name -> parameters JSON schema.
* ``held_suffix_len(text, markers)``: how much of a buffer end to hold back (partial marker).
* ``expect_at(buf, pos, lit, final)``: is ``lit`` at ``pos`` (1), undecided yet (0) or not (-1).
* ``json_fragment(s)``: JSON-escape a piece of string content (no quotes).
* ``coerce_param(value, schema)`` / ``is_string_schema(schema)``: schema-driven coercion of a textual
  parameter value, and whether a value will stay a string (and so can be streamed).

Pure functions on strings and dicts; this module imports nothing from ``base`` (no import cycle).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "coerce_param",
    "expect_at",
    "held_suffix_len",
    "is_string_schema",
    "json_fragment",
    "normalize_tools",
]


def normalize_tools(tools: list[dict] | None) -> dict[str, dict]:
    """OpenAI (``{"type":"function","function":{...}}``) or flat tool dicts -> name -> parameters schema."""
    out: dict[str, dict] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        inner = tool.get("function")
        fn: dict = inner if isinstance(inner, dict) else tool
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            continue
        schema = fn.get("parameters", fn.get("input_schema"))
        out[name] = schema if isinstance(schema, dict) else {}
    return out


def held_suffix_len(text: str, markers: tuple[str, ...] | list[str], start: int = 0) -> int:
    """Length of the longest suffix of ``text[start:]`` that is a proper prefix of one of ``markers``."""
    n = len(text)
    longest = max(map(len, markers), default=1)
    lo = max(start, n - longest + 1)
    tail = text[lo:]
    best = 0
    for m in markers:
        first = m[0]
        if first not in tail:
            continue
        j = text.find(first, max(lo, n - len(m) + 1))
        while j >= 0 and n - j > best:
            if m.startswith(text[j:]):
                best = n - j
                break
            j = text.find(first, j + 1)
    return best


def expect_at(buf: str, pos: int, lit: str, final: bool) -> int:
    """1 if ``buf[pos:]`` starts with ``lit``; 0 if it is a proper prefix of it (wait for more text, unless
    ``final``: then -1); -1 otherwise."""
    if buf.startswith(lit, pos):
        return 1
    if not final and lit.startswith(buf[pos:]):
        return 0
    return -1


_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f]')


def json_fragment(s: str) -> str:
    """``s`` JSON-escaped without the surrounding quotes (safe to stream inside a JSON string)."""
    if _NEEDS_ESCAPE.search(s) is None:
        return s
    return json.dumps(s, ensure_ascii=False)[1:-1]


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def is_string_schema(schema: dict | None) -> bool:
    """True when ``coerce_param`` keeps every value a string (no type, or "string" among the types)."""
    types: Any = (schema or {}).get("type")
    if isinstance(types, str):
        types = [types]
    return not isinstance(types, list) or not types or "string" in types


def coerce_param(value: str, schema: dict | None) -> Any:
    """Coerce a literal textual parameter value by its JSON-schema type (strings stay strings).

    integer/number/boolean/object/array/null are parsed (JSON first, Python literal words tolerated);
    when parsing fails the raw string is kept. Without a schema (or type) the value stays a string.
    """
    if is_string_schema(schema):
        return value
    types: Any = (schema or {}).get("type")
    if isinstance(types, str):
        types = [types]
    v = value.strip()
    for t in types:
        if t == "integer":
            try:
                return int(v)
            except ValueError:
                try:
                    f = float(v)
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        elif t == "number":
            try:
                f = float(v)
            except ValueError:
                continue
            if f != f or f in (float("inf"), float("-inf")):
                continue  # not representable in JSON
            return int(f) if ("." not in v and "e" not in v.lower() and f.is_integer()) else f
        elif t == "boolean":
            if v.lower() in _TRUE:
                return True
            if v.lower() in _FALSE:
                return False
        elif t == "null":
            if v.lower() in ("null", "none"):
                return None
        elif t in ("object", "array"):
            try:
                parsed = json.loads(v)
            except ValueError:
                continue
            if isinstance(parsed, dict if t == "object" else list):
                return parsed
    return value
