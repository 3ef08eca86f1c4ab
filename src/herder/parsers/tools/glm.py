"""GLM-4.5/4.6 (``glm45_moe``) and GLM-4.7/GLM-5 (``glm47_moe``) tool calls.

GLM-4.5 / 4.6 (chat template of ``zai-org/GLM-4.5``)::

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Beijing</arg_value>
    <arg_key>days</arg_key>
    <arg_value>3</arg_value>
    </tool_call>
    <tool_call>...</tool_call>

GLM-4.7 / GLM-5: the same without newlines:
``<tool_call>get_weather<arg_key>city</arg_key><arg_value>Beijing</arg_value></tool_call>``.

The name is the rest of the ``<tool_call>`` line (4.5) or runs up to whitespace / ``<`` (4.7). Values are
literal text coerced by the tool schema (``minimax.value_mode``): string-typed values stream as they arrive,
other typed values are parsed at ``</arg_value>``, values of unknown parameters are JSON-parsed when valid JSON
and kept as strings otherwise. Consecutive calls (separated by whitespace) form one region; the whitespace
between them is dropped, text after the last call is normal text.
"""

from __future__ import annotations

import re
from typing import ClassVar

from herder.parsers.tools.base import (
    ScanOutput,
    SectionScanner,
    ToolParser,
    held_suffix_len,
    json_fragment,
)
from herder.parsers.tools.minimax import (
    ArgsWriter,
    MarkerSearch,
    ValueMode,
    alternation,
    decode_value,
    skip_ws,
    valid_name,
    value_mode,
)

__all__ = ["Glm45MoeToolParser", "Glm47MoeToolParser"]

_OPEN = "<tool_call>"
_CLOSE = "</tool_call>"
_KEY_OPEN = "<arg_key>"
_KEY_CLOSE = "</arg_key>"
_VAL_OPEN = "<arg_value>"
_VAL_CLOSE = "</arg_value>"
_LIMIT = 512
_RX_BODY = alternation(_KEY_OPEN, _CLOSE)
_RX_VOPEN = alternation(_VAL_OPEN, _CLOSE)

# states
_NAME = 0
_BODY = 1
_KEY = 2
_VOPEN = 3
_PSTR = 4
_PACC = 5
_AFTER = 6


class _GlmScanner(SectionScanner):
    name_end: ClassVar[re.Pattern[str]]
    skip_leading_ws: ClassVar[bool]

    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self.cur = MarkerSearch(len(marker))
        self.state = _NAME
        self.named = False
        self.call_start = 0
        self.last_end = 0
        self.fn = ""
        self.key = ""
        self.mode = ValueMode.JSON
        self.schema: dict | None = None
        self.writer = ArgsWriter()

    def _final(self, buf: str, out: ScanOutput) -> None:
        """End of text inside a call: close it (its name was emitted) and end the region."""
        self.writer.close(out)
        out.end_call()
        out.finish(len(buf))

    def _fail(self, out: ScanOutput) -> None:
        if self.named:
            out.finish(self.call_start)
        else:
            out.reject(len(self.marker))

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        cur = self.cur
        n = len(buf)
        while True:
            st = self.state
            if st == _NAME:
                if self.skip_leading_ws and cur.pos == cur.mark:
                    cur.goto(skip_ws(buf, cur.pos))
                m = cur.search(buf, self.name_end, 1)
                at = m.start() if m else -1
                if (at >= 0 and at - cur.pos > _LIMIT) or (at < 0 and (final or n - cur.pos > _LIMIT)):
                    self._fail(out)
                    return
                if at < 0:
                    return
                name = buf[cur.pos : at].strip()
                if not valid_name(name):
                    self._fail(out)
                    return
                self.fn = name
                self.named = True
                out.name(name)
                self.writer = ArgsWriter()
                cur.goto(at)
                self.state = _BODY
            elif st in (_BODY, _VOPEN):
                rx = _RX_BODY if st == _BODY else _RX_VOPEN
                m = cur.search(buf, rx[0], rx[1])
                if m is None:
                    if final:
                        self._final(buf, out)
                    return
                cur.goto(m.end())
                if m.group() == _CLOSE:
                    self.writer.close(out)
                    out.end_call()
                    self.last_end = m.end()
                    self.state = _AFTER
                elif st == _BODY:
                    self.state = _KEY
                else:
                    self.schema = self.parser.param_schema(self.fn, self.key)
                    self.mode = value_mode(self.schema)
                    if self.mode == ValueMode.STRING:
                        self.writer.key(out, self.key)
                        out.args('"')
                        self.state = _PSTR
                    else:
                        self.state = _PACC
            elif st == _KEY:
                at = cur.find(buf, _KEY_CLOSE)
                if at < 0:
                    if final:
                        self._final(buf, out)
                    return
                self.key = buf[cur.pos : at].strip()
                cur.goto(at + len(_KEY_CLOSE))
                self.state = _VOPEN
            elif st == _PSTR:
                at = cur.find(buf, _VAL_CLOSE)
                if at >= 0:
                    out.args(json_fragment(buf[cur.pos : at]) + '"')
                    cur.goto(at + len(_VAL_CLOSE))
                    self.state = _BODY
                    continue
                end = n if final else n - held_suffix_len(buf, (_VAL_CLOSE,), cur.pos)
                if end > cur.pos:
                    out.args(json_fragment(buf[cur.pos : end]))
                    cur.goto(end)
                if final:
                    out.args('"')
                    self._final(buf, out)
                return
            elif st == _PACC:
                at = cur.find(buf, _VAL_CLOSE)
                if at < 0 and not final:
                    return
                raw = buf[cur.pos : at if at >= 0 else n]
                self.writer.member(out, self.key, decode_value(raw, self.mode, self.schema))
                if at < 0:
                    self._final(buf, out)
                    return
                cur.goto(at + len(_VAL_CLOSE))
                self.state = _BODY
            else:  # _AFTER: another call right after (whitespace only), or the region is over
                p = skip_ws(buf, cur.mark)
                cur.mark = p
                if buf.startswith(_OPEN, p):
                    self.call_start = p
                    cur.goto(p + len(_OPEN))
                    self.state = _NAME
                elif not final and _OPEN.startswith(buf[p : p + len(_OPEN)]):
                    return  # need more text (p == n included)
                else:
                    out.finish(self.last_end)
                    return


class _Glm45Scanner(_GlmScanner):
    name_end = re.compile(r"[\n<]")
    skip_leading_ws = False


class _Glm47Scanner(_GlmScanner):
    name_end = re.compile(r"[\s<]")
    skip_leading_ws = True


class Glm45MoeToolParser(ToolParser):
    """``glm45_moe``: ``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``."""

    name = "glm45_moe"
    start_markers = (_OPEN,)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _Glm45Scanner(self, marker)


class Glm47MoeToolParser(ToolParser):
    """``glm47_moe``: ``<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``."""

    name = "glm47_moe"
    start_markers = (_OPEN,)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _Glm47Scanner(self, marker)
