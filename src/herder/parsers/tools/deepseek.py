"""DeepSeek-V3 (``deepseek``) and DeepSeek-V3.1 (``deepseek31``) tool calls, plus ``DelimitedJsonScanner``.

``｜`` is U+FF5C and ``▁`` is U+2581 (single special tokens in DeepSeek's tokenizer).

DeepSeek-V3 (chat template of ``deepseek-ai/DeepSeek-V3``; calls joined by ``\\n``)::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"location": "Tokyo"}
    ```<｜tool▁call▁end｜>
    <｜tool▁call▁begin｜>function<｜tool▁sep｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>

DeepSeek-V3.1 / V3.2-Exp: the name directly follows the call marker, the arguments are raw JSON::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"location": "Tokyo"}<｜tool▁call▁end｜>
    <｜tool▁calls▁end｜>

Both tolerate a missing or present code fence. Arguments are streamed verbatim as they arrive (up to the last
safe point of the JSON, see ``base.RawJsonArgs``). A call whose arguments do not start with ``{`` is not a tool
call: when it is the region's first, the whole region is normal text; otherwise the region ends there and
the rest is normal text. Invalid JSON in the middle of arguments closes them at their last safe point.

``DelimitedJsonScanner`` is the shared scanner of "begin / header / separator / JSON / end" formats (also used
by ``kimi.KimiK2ToolParser``).
"""

from __future__ import annotations

import re
from typing import ClassVar

from herder.parsers.tools.base import (
    DONE,
    PENDING,
    RawJsonArgs,
    ScanOutput,
    SectionScanner,
    ToolParser,
)
from herder.parsers.tools.minimax import MarkerSearch, alternation, skip_ws, valid_name

__all__ = ["DeepSeekV3ToolParser", "DeepSeekV31ToolParser", "DelimitedJsonScanner"]

_FENCE = re.compile(r"```[\w-]*[ \t]*")
_NAME_END = re.compile(r"[\n`{<]")
_LIMIT = 512  # longest accepted header / name line; decided on the text only, never on chunking

# states
_BETWEEN = 0
_HEADER = 1
_NAME = 2  # V3: the name line after the separator
_FENCE_ST = 3
_ARGS = 4
_TAIL = 5


class DelimitedJsonScanner(SectionScanner):
    """``REGION (CALL_BEGIN header HEADER_END [```json] {json} [```] CALL_END)* REGION_CLOSE`` regions.

    A region opened by ``call_begin`` itself (a start marker without the section marker) holds
    consecutive calls and ends after the last one.
    """

    call_begin: ClassVar[str]
    header_end: ClassVar[str]
    call_end: ClassVar[str]
    region_close: ClassVar[str]
    name_line: ClassVar[bool] = False  # V3: header is the call type, the name is on the next line

    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self.cur = MarkerSearch(len(marker))
        self.named = False
        self.call_start = 0
        self.last_end = len(marker)
        self.fn = ""
        self.call_named = False
        self.jargs: RawJsonArgs | None = None
        if marker == self.call_begin:
            self.state = _HEADER
        else:
            self.state = _BETWEEN
        self.rx_tail = _tail_rx(type(self))

    def header_name(self, header: str) -> str | None:
        """The function name from the header text before ``header_end`` (None: malformed)."""
        name = header.strip()
        return name if valid_name(name) else None

    def _fail(self, out: ScanOutput) -> None:
        """The current call is not a tool call: it and what follows are normal text."""
        if self.named:
            out.finish(self.call_start)
        else:
            out.reject(len(self.marker))

    def _stop(self, out: ScanOutput) -> None:
        """No further call: the region ends after the last call."""
        if self.named:
            out.finish(self.last_end)
        else:
            out.reject(len(self.marker))

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        cur = self.cur
        n = len(buf)
        while True:
            st = self.state
            if st == _BETWEEN:
                p = skip_ws(buf, cur.pos)
                cur.goto(p)  # whitespace between calls is consumed once
                if buf.startswith(self.call_begin, p):
                    self.call_start = p
                    cur.goto(p + len(self.call_begin))
                    self.state = _HEADER
                elif buf.startswith(self.region_close, p):
                    if self.named:
                        out.finish(p + len(self.region_close))
                    else:
                        out.reject(len(self.marker))
                    return
                elif not final and (
                    self.call_begin.startswith(buf[p:]) or self.region_close.startswith(buf[p:])
                ):
                    return  # need more text (p == n included)
                else:
                    self._stop(out)
                    return
            elif st == _HEADER:
                at = cur.find(buf, self.header_end)
                if (at >= 0 and at - cur.pos > _LIMIT) or (
                    at < 0 and (final or n - cur.pos > _LIMIT + len(self.header_end))
                ):
                    self._fail(out)
                    return
                if at < 0:
                    return
                header = buf[cur.pos : at]
                cur.goto(at + len(self.header_end))
                if self.name_line:
                    if not valid_name(header.strip()):
                        self._fail(out)
                        return
                    self.state = _NAME
                    continue
                name = self.header_name(header)
                if name is None:
                    self._fail(out)
                    return
                self.fn = name
                self.state = _FENCE_ST
            elif st == _NAME:
                m = cur.search(buf, _NAME_END, 1)
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
                cur.goto(at)
                self.state = _FENCE_ST
            elif st == _FENCE_ST:
                p = skip_ws(buf, cur.pos)
                cur.goto(p)
                if p >= n:
                    if final:
                        self._fail(out)
                    return
                c = buf[p]
                if c == "{":
                    start = p
                elif c == "`":
                    nl = buf.find("\n", p, p + 64)
                    if nl < 0:
                        if final or n - p >= 64:
                            self._fail(out)
                        return
                    if _FENCE.fullmatch(buf, p, nl) is None:
                        self._fail(out)
                        return
                    start = nl + 1
                else:
                    self._fail(out)
                    return
                self.jargs = RawJsonArgs(start)
                self.call_named = False
                cur.goto(start)
                self.state = _ARGS
            elif st == _ARGS:
                ja = self.jargs
                assert ja is not None
                if not self.call_named:
                    js = ja.scanner
                    js.feed(buf, final)
                    if js.value_start < 0:
                        if js.error or final:
                            self._fail(out)
                        return
                    if buf[js.value_start] != "{":
                        self._fail(out)
                        return
                    out.name(self.fn)
                    self.named = True
                    self.call_named = True
                r = ja.step(buf, final, out)
                if r == PENDING:
                    return
                cur.goto(ja.end if r == DONE else max(ja.scanner.pos, cur.pos))
                self.state = _TAIL
            else:  # _TAIL: skip the closing fence / junk up to the call end
                m = cur.search(buf, self.rx_tail[0], self.rx_tail[1])
                if m is None:
                    if final:
                        out.end_call()
                        out.finish(n)
                    return
                out.end_call()
                if m.group() == self.region_close:
                    out.finish(m.end())
                    return
                self.last_end = m.end()
                cur.goto(m.end())
                self.state = _BETWEEN


_TAIL_RX: dict[type, tuple[re.Pattern[str], int]] = {}


def _tail_rx(cls: type[DelimitedJsonScanner]) -> tuple[re.Pattern[str], int]:
    hit = _TAIL_RX.get(cls)
    if hit is None:
        hit = _TAIL_RX[cls] = alternation(cls.call_end, cls.region_close)
    return hit


class _V3Scanner(DelimitedJsonScanner):
    call_begin = "<｜tool▁call▁begin｜>"
    header_end = "<｜tool▁sep｜>"
    call_end = "<｜tool▁call▁end｜>"
    region_close = "<｜tool▁calls▁end｜>"
    name_line = True


class _V31Scanner(_V3Scanner):
    name_line = False


class DeepSeekV3ToolParser(ToolParser):
    """``deepseek``: DeepSeek-V3 markers, ``function<｜tool▁sep｜>NAME`` and fenced JSON arguments."""

    name = "deepseek"
    start_markers = ("<｜tool▁calls▁begin｜>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _V3Scanner(self, marker)


class DeepSeekV31ToolParser(ToolParser):
    """``deepseek31``: DeepSeek-V3.1 markers, ``NAME<｜tool▁sep｜>`` and raw JSON arguments."""

    name = "deepseek31"
    start_markers = ("<｜tool▁calls▁begin｜>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _V31Scanner(self, marker)
