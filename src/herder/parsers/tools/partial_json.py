"""Tolerant, incremental partial-JSON scanning for streaming tool-call arguments.

Public API (stable):

- ``JsonScanner(start=0)``: an incremental scanner for ONE JSON value that starts at offset ``start`` of a
  growing text buffer. Call ``feed(text, final=False)`` each time the buffer grows (the buffer must only grow
  by appending; earlier characters never change). It processes only the new characters (strings are skipped
  with a regex), so scanning a whole value costs O(len). Attributes after ``feed``:

  * ``done`` / ``end``: the value is complete and ends (exclusive) at ``end``.
  * ``error`` / ``error_pos``: the text is not valid JSON at ``error_pos`` (scanning stops).
  * ``value_start``: offset of the first non-whitespace character of the value (-1 before it is seen).
  * ``safe``: the last "safe point" (exclusive offset, -1 if none) - ``text[value_start:safe] + closer()``
    is valid JSON, and ``text[value_start:safe]`` is a prefix of the final value text. Safe points are after
    an opening bracket, after a complete value, and inside a (non-key) string but never inside an escape.
  * ``closer(skip=0)``: the characters that close the value at the safe point (e.g. ``'"}]'``); with
    ``skip=1`` the root container stays open (closes just a member value being streamed).
  * ``root_key`` / ``member_start``: when the root is an object, the key of the depth-1 member being read
    and the offset where its value starts (-1 while the value has not started).
  * ``members``: completed depth-1 members as ``(key, value_start, value_end)`` tuples.
  * ``depth``: current nesting depth (0 before the root container opens / after it closes).
  * ``ctrl``: offsets of raw control characters (U+0000-U+001F) met inside strings. They are accepted
    (models emit raw newlines in code strings) but strict ``json.loads`` rejects them, so re-emit value
    text with ``slice(text, start, end)``, which escapes them (``\n`` -> ``\\n``).

  With ``final=True`` the end of the text terminates a pending number/literal (``{"a": 12`` -> ``12``).

- ``find_json_end(text, start=0) -> int | None``: end offset of the complete JSON value at ``start``
  (leading whitespace allowed), or None when incomplete or invalid.
- ``repair_json(prefix) -> str | None``: closes an incomplete JSON prefix at its last safe point
  (``'{"a": [1, "x'`` -> ``'{"a": [1, "x"]}'``); None when the prefix is invalid or has no safe point.
- ``parse_partial(prefix) -> Any``: ``json.loads(repair_json(prefix))``; raises ValueError when impossible.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from typing import Any

__all__ = ["STRING_LANE_STOP", "JsonScanner", "find_json_end", "parse_partial", "repair_json"]

# Body of a string: runs of ordinary characters or complete escapes. Stops at '"', at a backslash that
# does not start a complete valid escape, or at the end of the text.
_STR_BODY = re.compile(r'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_WS = re.compile(r"[ \t\r\n]*")
_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")
_LITERAL_CHARS = re.compile(r"[-+.0-9eEa-z]*")
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_PARTIAL_LITERAL = re.compile(r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?)?")
_WORDS = ("true", "false", "null")

# What the scanner expects next (outside strings).
_VALUE = 0  # a value (root, after ':' or after ',' in an array)
_VALUE_OR_CLOSE = 1  # right after '['
_KEY = 2  # after ',' in an object
_KEY_OR_CLOSE = 3  # right after '{'
_COLON = 4
_COMMA_OR_CLOSE = 5

_CLOSE = {"{": "}", "[": "]"}
# Characters that can end or change a JSON string; anything else is plain string content.
STRING_LANE_STOP = re.compile(r'["\\\x00-\x1f]')
_CTRL_ESCAPES = [json.dumps(chr(c))[1:-1] for c in range(32)]


def _match_end(rx: re.Pattern[str], text: str, i: int) -> int:
    """End of the (possibly empty) match of ``rx`` at ``i``."""
    m = rx.match(text, i)
    return m.end() if m else i


def _could_extend_literal(tok: str) -> bool:
    """True when ``tok`` (running to the end of the text) may still become a valid literal."""
    if any(w.startswith(tok) for w in _WORDS):
        return True
    m = _PARTIAL_LITERAL.fullmatch(tok)
    return m is not None


class JsonScanner:
    """Incremental scanner for one JSON value in an append-only buffer (see module docstring)."""

    __slots__ = (
        "_expect",
        "_in_string",
        "_key_string",
        "_stack",
        "_string_start",
        "ctrl",
        "done",
        "end",
        "error",
        "error_pos",
        "member_start",
        "members",
        "pos",
        "root_key",
        "safe",
        "safe_in_string",
        "value_start",
    )

    def __init__(self, start: int = 0) -> None:
        self.pos = start
        self._stack: list[str] = []
        self._expect = _VALUE
        self._in_string = False
        self._key_string = False
        self._string_start = -1
        self.value_start = -1
        self.safe = -1
        self.safe_in_string = False
        self.done = False
        self.end = -1
        self.error = False
        self.error_pos = -1
        self.root_key: str | None = None
        self.member_start = -1
        self.members: list[tuple[str, int, int]] = []
        self.ctrl: list[int] = []

    @property
    def depth(self) -> int:
        return len(self._stack)

    @property
    def in_string(self) -> bool:
        return self._in_string

    def in_value_string_at_end(self, text: str) -> bool:
        """True when every character of ``text`` is consumed and a value (not key) string is open."""
        return self._in_string and not self._key_string and self.pos == len(text) and not self.error

    def skip(self, n: int) -> None:
        """Account for ``n`` more plain string characters (no quote, backslash or control character)
        appended to the open value string without ``feed`` (see ``in_value_string_at_end``)."""
        self.pos += n
        self.safe = self.pos

    def slice(self, text: str, start: int, end: int) -> str:
        """``text[start:end]`` with raw control characters inside strings escaped (valid strict JSON).

        Per-character escaping, so slicing a value in pieces and joining them gives the same result
        as slicing it whole.
        """
        ctrl = self.ctrl
        if not ctrl or ctrl[-1] < start:
            return text[start:end]
        lo = bisect_left(ctrl, start)
        hi = bisect_left(ctrl, end, lo)
        if lo == hi:
            return text[start:end]
        parts: list[str] = []
        at = start
        for k in range(lo, hi):
            c = ctrl[k]
            parts.append(text[at:c])
            parts.append(_CTRL_ESCAPES[ord(text[c])])
            at = c + 1
        parts.append(text[at:end])
        return "".join(parts)

    def closer(self, skip: int = 0) -> str:
        """Characters closing the value at the current safe point (``skip`` outermost levels left open)."""
        tail = "".join(_CLOSE[c] for c in reversed(self._stack[skip:]))
        return '"' + tail if self.safe_in_string else tail

    def _fail(self, pos: int) -> None:
        self.error = True
        self.error_pos = pos
        self.pos = pos

    def _value_done(self, end: int) -> None:
        stack = self._stack
        self.safe = end
        self.safe_in_string = False
        if not stack:
            self.done = True
            self.end = end
            return
        self._expect = _COMMA_OR_CLOSE
        if len(stack) == 1 and stack[0] == "{" and self.root_key is not None:
            self.members.append((self.root_key, self.member_start, end))
            self.member_start = -1

    def feed(self, text: str, final: bool = False) -> None:
        """Scan the characters appended since the previous call (see module docstring)."""
        if self._in_string and not final and not self._key_string:
            # fast path: more characters of a value string (the bulk of streamed arguments). After an
            # error the position sits on the bad escape, which the regex never passes, so no fast path.
            j = _STR_BODY.match(text, self.pos).end()  # type: ignore[union-attr]
            if j == len(text):
                self.pos = self.safe = j
                return
        if self.done or self.error:
            return
        n = len(text)
        i = self.pos
        stack = self._stack
        while i < n:
            if self._in_string:
                j = _STR_BODY.match(text, i).end()  # type: ignore[union-attr]
                if j < n and text[j] < " ":
                    # A raw control character: invalid in strict JSON, but models emit them (raw newlines
                    # in code). Accepted and remembered, so re-emitted text can escape it (see ``slice``).
                    self.ctrl.append(j)
                    i = j + 1
                    if not self._key_string:
                        self.safe = i
                        self.safe_in_string = True
                    continue
                if j < n and text[j] == '"':
                    self._in_string = False
                    i = j + 1
                    if self._key_string:
                        if len(stack) == 1:
                            self.root_key = json.loads(text[self._string_start : i], strict=False)
                        self._expect = _COLON
                    else:
                        self._value_done(i)
                        if self.done:
                            break
                    continue
                if not self._key_string:
                    self.safe = j
                    self.safe_in_string = True
                if j < n:
                    # A backslash that does not start a complete escape: fine only at the end of the text.
                    m = _PARTIAL_ESCAPE.match(text, j)
                    if m is None or m.end() != n or final:
                        self._fail(j)
                        return
                i = j
                break
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if i >= n:
                break
            c = text[i]
            exp = self._expect
            if exp == _COLON:
                if c != ":":
                    self._fail(i)
                    return
                self._expect = _VALUE
                i += 1
            elif exp == _COMMA_OR_CLOSE:
                top = stack[-1]
                if c == ",":
                    self._expect = _KEY if top == "{" else _VALUE
                    i += 1
                elif c == _CLOSE[top]:
                    stack.pop()
                    i += 1
                    self._value_done(i)
                    if self.done:
                        break
                else:
                    self._fail(i)
                    return
            elif exp in (_KEY, _KEY_OR_CLOSE):
                if c == '"':
                    self._in_string = True
                    self._key_string = True
                    self._string_start = i
                    i += 1
                elif c == "}" and exp == _KEY_OR_CLOSE:
                    stack.pop()
                    i += 1
                    self._value_done(i)
                    if self.done:
                        break
                else:
                    self._fail(i)
                    return
            else:  # _VALUE or _VALUE_OR_CLOSE
                if c == "]" and exp == _VALUE_OR_CLOSE:
                    stack.pop()
                    i += 1
                    self._value_done(i)
                    if self.done:
                        break
                    continue
                if self.value_start < 0:
                    self.value_start = i
                if len(stack) == 1 and stack[0] == "{":
                    self.member_start = i
                if c == "{" or c == "[":
                    stack.append(c)
                    self._expect = _KEY_OR_CLOSE if c == "{" else _VALUE_OR_CLOSE
                    i += 1
                    self.safe = i
                    self.safe_in_string = False
                elif c == '"':
                    self._in_string = True
                    self._key_string = False
                    self._string_start = i
                    i += 1
                    self.safe = i
                    self.safe_in_string = True
                else:
                    j = _match_end(_LITERAL_CHARS, text, i)
                    tok = text[i:j]
                    if j >= n and not final:
                        if not tok or not _could_extend_literal(tok):
                            self._fail(i)
                            return
                        break  # wait for the end of the number / word
                    if not tok or _LITERAL.fullmatch(tok) is None:
                        self._fail(i)
                        return
                    i = j
                    self._value_done(i)
                    if self.done:
                        break
        self.pos = i


def find_json_end(text: str, start: int = 0) -> int | None:
    """End offset (exclusive) of the complete JSON value starting at ``start``, else None."""
    sc = JsonScanner(start)
    sc.feed(text, final=True)
    return sc.end if sc.done else None


def repair_json(prefix: str) -> str | None:
    """Close an incomplete JSON prefix at its last safe point; None if impossible."""
    sc = JsonScanner(0)
    sc.feed(prefix, final=True)
    if sc.done:
        return sc.slice(prefix, sc.value_start, sc.end)
    if sc.safe < 0 or sc.value_start < 0:
        return None
    if sc.error and sc.error_pos < sc.safe:
        return None
    return sc.slice(prefix, sc.value_start, sc.safe) + sc.closer()


def parse_partial(prefix: str) -> Any:
    """Parse an incomplete JSON prefix (closed at its last safe point); ValueError if impossible."""
    fixed = repair_json(prefix)
    if fixed is None:
        raise ValueError("no parsable JSON prefix")
    return json.loads(fixed)
