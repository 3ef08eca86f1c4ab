"""``qwen_xml`` (alias ``qwen_coder``; Qwen3-Coder, Qwen3.5)::

    <tool_call>
    <function=NAME>
    <parameter=KEY>
    value
    </parameter>
    </function>
    </tool_call>

Values are literal text (no HTML unescaping); one leading and one trailing newline are stripped. Each value
is coerced by the tool's JSON schema type (integer/number/boolean/object/array/null parsed, strings kept;
without a schema a value is a string). String values are streamed as they arrive; typed values are emitted
when complete. A missing ``</parameter>`` is tolerated (the next ``<parameter=``/``</function>`` ends it).
"""

from __future__ import annotations

import json
import re

from herder.parsers.tools.base import (
    ScanOutput,
    SectionScanner,
    ToolParser,
    coerce_param,
    expect_at,
    is_string_schema,
    json_fragment,
)

__all__ = ["QwenXmlToolParser"]

FUNC = "<function="
PARAM = "<parameter="
END_PARAM = "</parameter>"
END_FUNC = "</function>"
END_CALL = "</tool_call>"
_VALUE_TERMS = (END_PARAM, PARAM, END_FUNC, END_CALL)
# A chunk without these characters is plain string-value content: emitted verbatim (see ScanOutput.lane).
_STRING_LANE_STOP = re.compile(r'[<\n"\\\x00-\x1f]')
_LONGEST_TERM = max(map(len, _VALUE_TERMS))
_VALUE_END = re.compile("|".join(re.escape(t) for t in _VALUE_TERMS))
_BODY_NEXT = re.compile("|".join(re.escape(t) for t in (PARAM, END_FUNC, END_CALL)))
_WS = re.compile(r"\s*")
_MAX_NAME = 256

_HEAD, _BODY, _KEY, _VALUE, _AFTER = range(5)


class _QwenXmlScanner(SectionScanner):
    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self._state = _HEAD
        self._pos = len(marker)
        self._named = False
        self._name = ""
        self._nparams = 0
        self._string = False
        self._schema: dict | None = None
        self._vstart = -1
        self._vemit = -1  # raw offset streamed so far (string values); -1 = leading newline undecided

    def _give_up(self, at: int, out: ScanOutput) -> None:
        if self._named:
            out.finish(at)
        else:
            out.reject(len(self.marker))

    def _close_call(self, out: ScanOutput) -> None:
        out.args("}")
        out.end_call()

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        n = len(buf)
        while True:
            st = self._state
            if st == _HEAD:
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                r = expect_at(buf, p, FUNC, final)
                if r < 0:
                    self._give_up(self._pos, out)
                if r != 1:
                    return
                q = p + len(FUNC)
                e = buf.find(">", q, q + _MAX_NAME + 1)
                bad = buf.find("<", q, e if e >= 0 else n)
                if (e < 0 and (final or n - q > _MAX_NAME)) or bad >= 0:
                    self._give_up(self._pos, out)
                    return
                if e < 0:
                    return
                name = buf[q:e].strip()
                if not name or "\n" in name:
                    self._give_up(self._pos, out)
                    return
                self._named = True
                self._name = name
                self._nparams = 0
                out.name(name)
                out.args("{")
                self._pos = e + 1
                self._state = _BODY
            elif st == _BODY:
                m = _BODY_NEXT.search(buf, self._pos)
                if m is None:
                    if final:
                        self._close_call(out)
                        out.finish(n)
                        return
                    self._pos = max(self._pos, n - len(END_CALL) + 1)  # text between parameters is ignored
                    return
                tok = m.group()
                if tok == PARAM:
                    self._pos = m.end()
                    self._state = _KEY
                else:
                    self._close_call(out)
                    if tok == END_CALL:
                        out.finish(m.end())
                        return
                    self._pos = m.end()
                    self._state = _AFTER
            elif st == _KEY:
                e = buf.find(">", self._pos)
                if e < 0:
                    if final:
                        self._close_call(out)
                        out.finish(n)
                    return
                key = buf[self._pos : e].strip()
                self._schema = self.parser.param_schema(self._name, key)
                self._string = is_string_schema(self._schema)
                sep = ", " if self._nparams else ""
                self._nparams += 1
                out.args(f'{sep}"{json_fragment(key)}": ' + ('"' if self._string else ""))
                self._pos = self._vstart = e + 1
                self._vemit = -1
                self._state = _VALUE
            elif st == _VALUE:
                if not self._value(buf, final, out):
                    return
            else:  # _AFTER a </function>
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                if p >= n and not final:
                    return
                if expect_at(buf, p, END_CALL, final) == 1:
                    out.finish(p + len(END_CALL))
                    return
                r = expect_at(buf, p, FUNC, final)
                if r == 1:
                    self._pos = p
                    self._state = _HEAD
                    continue
                if r == 0 or expect_at(buf, p, END_CALL, final) == 0:
                    return
                out.finish(self._pos)
                return

    def _value(self, buf: str, final: bool, out: ScanOutput) -> bool:
        """Advance inside a parameter value; True when the value is complete (state changed)."""
        n = len(buf)
        vs = self._vstart
        m = _VALUE_END.search(buf, self._pos)
        if m is None and not final:
            self._pos = max(self._pos, n - len(END_PARAM) + 1)
            if self._string:
                # Every terminator starts with its only "<": the held suffix (a terminator prefix) starts
                # at the last "<" of the tail, if any.
                k = buf.rfind("<", max(vs, n - _LONGEST_TERM + 1))
                held = n - k if k >= 0 and any(t.startswith(buf[k:]) for t in _VALUE_TERMS) else 0
                self._stream(buf, n - held, out)
                if self._vemit == n:
                    out.lane(_STRING_LANE_STOP, True, self._skip)
            return False
        end = m.start() if m else n
        cs = vs + 1 if buf.startswith("\n", vs) and end > vs else vs
        ce = end - 1 if end > cs and buf[end - 1] == "\n" else end
        if self._string:
            if self._vemit < 0:
                self._vemit = cs
            out.args(json_fragment(buf[self._vemit : ce]) + '"')
        else:
            value = coerce_param(buf[cs:ce], self._schema)
            out.args(json.dumps(value, ensure_ascii=False))
        if m is None:
            self._close_call(out)
            out.finish(n)
            return False
        self._pos = m.end() if m.group() == END_PARAM else m.start()
        self._state = _BODY
        return True

    def _skip(self, n: int) -> None:
        self._vemit += n

    def _stream(self, buf: str, stop: int, out: ScanOutput) -> None:
        vs = self._vstart
        if self._vemit < 0:
            if stop <= vs:
                return
            self._vemit = vs + 1 if buf[vs] == "\n" else vs
        if stop > self._vemit and buf[stop - 1] == "\n":
            stop -= 1  # may be the stripped trailing newline
        if stop > self._vemit:
            out.args(json_fragment(buf[self._vemit : stop]))
            self._vemit = stop


class QwenXmlToolParser(ToolParser):
    """Qwen3-Coder XML-style tool calls with schema-typed parameter values."""

    name = "qwen_xml"
    start_markers = ("<tool_call>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _QwenXmlScanner(self, marker)
