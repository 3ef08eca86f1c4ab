"""``pythonic`` (Llama 4 and fallbacks): ``[f(a=1, b="x"), g()]`` with Python literal arguments.

The list may be wrapped in ``<|python_start|>`` ... ``<|python_end|>``. Each call is parsed with ``ast``
(never evaluated) once its closing parenthesis arrives, and emitted whole (streaming is per call). Only
keyword arguments with literal values (``ast.literal_eval``) are accepted; anything else makes the call
malformed: before the first call the whole region is normal text, later calls end the region there.

Also provides ``PyBracketScanner`` and ``PyListScanner``, reused by ``sarashina``.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from herder.parsers.tools.base import ScanOutput, SectionScanner, ToolParser, expect_at

__all__ = ["PyBracketScanner", "PyListScanner", "PythonicToolParser", "jsonable"]

_WS = re.compile(r"\s*")
_PLAIN = re.compile(r"[^'\"()\[\]{}#]*")
_SQ = re.compile(r"(?:[^'\\\n]|\\.)*", re.S)
_DQ = re.compile(r'(?:[^"\\\n]|\\.)*', re.S)
# A quote inside a triple-quoted string is consumed only when it certainly does not start the closing
# triple (so a closing triple split across chunks is still recognised).
_TSQ = re.compile(r"(?:[^'\\]|\\.|'(?=[^']|'[^']))*", re.S)
_TDQ = re.compile(r'(?:[^"\\]|\\.|"(?=[^"]|"[^"]))*', re.S)
_BODIES = {"'": _SQ, '"': _DQ, "'''": _TSQ, '"""': _TDQ}
# Inside a string, a chunk without these characters changes nothing but the position (ScanOutput.lane).
_LANES = {"'": re.compile(r"['\\\n]"), '"': re.compile(r'["\\\n]')}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")

PENDING = -1
ERROR = -2


class PyBracketScanner:
    """Finds the end of a bracketed Python expression (``(...)``, ``[...]``, ``{...}``) incrementally.

    Starts at the opening bracket; ``feed(buf, final)`` returns the offset just after the matching
    closing bracket, ``PENDING`` or ``ERROR``. Strings (incl. triple-quoted) are skipped by regex.
    """

    __slots__ = ("depth", "pos", "quote")

    def __init__(self, start: int) -> None:
        self.pos = start
        self.depth = 0
        self.quote = ""

    def skip(self, n: int) -> None:
        """Account for ``n`` plain characters appended inside the open string without ``feed``."""
        self.pos += n

    def feed(self, buf: str, final: bool) -> int:
        n = len(buf)
        i = self.pos
        while i < n:
            q = self.quote
            if q:
                j = _BODIES[q].match(buf, i).end()  # type: ignore[union-attr]
                if buf.startswith(q, j):
                    self.quote = ""
                    i = j + len(q)
                    continue
                if j < n and buf[j] == "\n":
                    return ERROR
                i = j  # end of text (maybe before a lone backslash: re-read it next time)
                break
            i = _PLAIN.match(buf, i).end()  # type: ignore[union-attr]
            if i >= n:
                break
            c = buf[i]
            if c in "([{":
                self.depth += 1
                i += 1
            elif c in ")]}":
                self.depth -= 1
                i += 1
                if self.depth <= 0:
                    self.pos = i
                    return i if self.depth == 0 else ERROR
            elif c == "#":
                return ERROR
            else:
                if n - i < 3 and buf[i:] == c * (n - i) and not final:
                    break  # '' or ''' ? wait for the next character
                if buf.startswith(c * 3, i):
                    self.quote = c * 3
                    i += 3
                else:
                    self.quote = c
                    i += 1
        self.pos = i
        return ERROR if final else PENDING


def jsonable(v: Any) -> Any:
    """Python literal -> JSON-compatible value (tuples/sets -> lists, bytes -> str, other keys -> str)."""
    if isinstance(v, dict):
        return {k if isinstance(k, str) else json.dumps(jsonable(k)): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [jsonable(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return str(v)
    if isinstance(v, complex):
        return str(v)
    return v


class _AfterItem(PyBracketScanner):
    """Sentinel body: the last item is complete; only its separator is awaited."""


_AFTER_ITEM = _AfterItem(0)


class PyListScanner(SectionScanner):
    """Region: [prefix marker] ``[`` item, item, ... ``]`` [suffix marker]; items parsed when complete.

    Subclasses implement ``item_open`` (where the bracketed body of the next item starts) and
    ``parse_item`` (item text -> (name, arguments dict) or None when malformed).
    """

    suffix = ""

    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self._pos = 0 if marker == "[" else len(marker)
        self._opened = False
        self._item_start = -1
        self._body: PyBracketScanner | None = None
        self._named = False

    def item_open(self, buf: str, p: int, final: bool) -> int:
        """Offset of the item's opening bracket at/after ``p``; PENDING or ERROR."""
        raise NotImplementedError

    def parse_item(self, text: str) -> tuple[str, dict] | None:
        raise NotImplementedError

    def _give_up(self, at: int, out: ScanOutput) -> None:
        if self._named:
            out.finish(at)
        else:
            out.reject(len(self.marker))

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        n = len(buf)
        while True:
            if self._body is _AFTER_ITEM:
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                if p >= n:
                    if final:
                        out.finish(self._pos)
                    return
                self._body = None
                if not self._after_item(buf, p, final, out):
                    return
            if not self._opened:
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                r = expect_at(buf, p, "[", final)
                if r != 1:
                    if r < 0:
                        self._give_up(self._pos, out)
                    return
                self._opened = True
                self._pos = p + 1
            if self._body is None:
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                b = self.item_open(buf, p, final)
                if b == PENDING:
                    return
                if b == ERROR:
                    self._give_up(self._pos, out)
                    return
                self._item_start = p
                self._body = PyBracketScanner(b)
            body = self._body
            end = body.feed(buf, final)
            if end == PENDING:
                if body.quote and body.pos == n:
                    out.lane(_LANES[body.quote[0]], False, body.skip)
                return
            item = self.parse_item(buf[self._item_start : end]) if end >= 0 else None
            if item is None:
                self._give_up(self._item_start if self._named else self._pos, out)
                return
            self._named = True
            out.name(item[0])
            out.args(json.dumps(jsonable(item[1]), ensure_ascii=False))
            out.end_call()
            self._pos = end
            self._body = _AFTER_ITEM  # now wait for "," or "]"

    def _after_item(self, buf: str, p: int, final: bool, out: ScanOutput) -> bool:
        """Handles what follows a complete item; True to continue with the next item."""
        c = buf[p]
        if c == ",":
            self._pos = p + 1
            return True
        if c != "]":
            out.finish(self._pos)
            return False
        end = p + 1
        if self.suffix:
            q = _WS.match(buf, end).end()  # type: ignore[union-attr]
            r = expect_at(buf, q, self.suffix, final)
            if r == 0:
                self._body = _AFTER_ITEM  # "]" is re-read next time
                return False
            if r == 1:
                end = q + len(self.suffix)
        out.finish(end)
        return False


class _PythonicScanner(PyListScanner):
    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self.suffix = "<|python_end|>" if marker != "[" else ""

    def item_open(self, buf: str, p: int, final: bool) -> int:
        m = _IDENT.match(buf, p)
        if m is None:
            return PENDING if p >= len(buf) and not final else ERROR
        q = m.end()
        if q - p > 256:
            return ERROR
        if q >= len(buf):
            return ERROR if final else PENDING
        return q if buf[q] == "(" else ERROR

    def parse_item(self, text: str) -> tuple[str, dict] | None:
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None
        if not isinstance(node, ast.Call) or node.args:
            return None
        try:
            name = ast.unparse(node.func)
        except (ValueError, RecursionError):  # pragma: no cover - defensive
            return None
        if not _IDENT.fullmatch(name):
            return None
        args: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                return None
            try:
                args[kw.arg] = ast.literal_eval(kw.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
        return name, args


class PythonicToolParser(ToolParser):
    """Pythonic tool-call lists."""

    name = "pythonic"
    start_markers = ("<|python_start|>", "[")

    def new_scanner(self, marker: str) -> SectionScanner:
        return _PythonicScanner(self, marker)
