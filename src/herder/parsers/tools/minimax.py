"""MiniMax-M2 tool calls, plus the XML-parameter machinery shared by the tag-based families.

MiniMax-M2 (chat template of ``MiniMaxAI/MiniMax-M2``)::

    <minimax:tool_call>
    <invoke name="get_weather">
    <parameter name="city">Beijing</parameter>
    <parameter name="days">3</parameter>
    </invoke>
    <invoke name="...">...</invoke>
    </minimax:tool_call>

Several ``<invoke>`` blocks may share one wrapper (parallel calls) and several wrappers may follow each other.
Parameter values are literal text (the template writes strings verbatim and other values as JSON; no XML
escaping), so values are coerced by the tool schema: string-typed values are streamed as they arrive,
other typed values are parsed at ``</parameter>`` (``coerce_param``), and values of unknown parameters are
JSON-parsed when they are valid JSON, else kept as strings.

Shared machinery (used by ``step3``, ``deepseek_dsml``, ``kimi`` (K3) and ``glm``):

* ``ArgsWriter`` builds the arguments JSON object piece by piece (``{"k": v, "k2": "str...``).
* ``value_mode`` / ``decode_value`` decide how a textual parameter value becomes a JSON value.
* ``XmlCallScanner`` is a ``SectionScanner`` for the grammar family
  ``REGION_OPEN (CALL_OPEN attrs CALL_OPEN_END (PARAM_OPEN attrs PARAM_OPEN_END value PARAM_CLOSE)*
  CALL_CLOSE)* REGION_CLOSE``; a subclass gives the literals and how to read the attributes. Text between
  the recognised tags (newlines, format filler such as step3's ``<｜tool_call_begin｜>function<｜tool_sep｜>``)
  is skipped. Every search resumes where the previous one stopped, so a region costs O(its length).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from herder.parsers.tools.base import (
    PENDING,
    RawJsonArgs,
    ScanOutput,
    SectionScanner,
    ToolParser,
    coerce_param,
    held_suffix_len,
    json_fragment,
)

__all__ = [
    "ArgsWriter",
    "MinimaxM2ToolParser",
    "ValueMode",
    "XmlCallScanner",
    "decode_value",
    "parse_attrs",
    "skip_ws",
    "value_mode",
]

_WS = re.compile(r"\s*")
_ATTR = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")


class ValueMode:
    """How a textual parameter value becomes a JSON value."""

    STRING = 0  # the raw text is the string value (streamed as it arrives)
    JSON = 1  # JSON-parsed (surrounding whitespace ignored); the raw text when it is not valid JSON
    SCHEMA = 2  # coerce_param by a non-string schema type


def skip_ws(buf: str, pos: int) -> int:
    """Offset of the first non-whitespace character of ``buf`` at or after ``pos`` (``len(buf)`` if none)."""
    m = _WS.match(buf, pos)
    return m.end() if m else pos


def _no_constant(_: str) -> Any:
    raise ValueError("NaN/Infinity are not JSON")


def loads_or_raw(raw: str) -> Any:
    """``raw`` parsed as strict JSON, or ``raw`` itself when it is not valid JSON."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        return raw


def value_mode(schema: dict | None) -> int:
    """Mode for a parameter with JSON schema ``schema`` (None: unknown parameter -> JSON-or-string)."""
    if not schema:
        return ValueMode.JSON
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not types:
        # anyOf/enum/... without a plain type: infer from the text.
        return ValueMode.JSON
    if "string" in types:
        return ValueMode.STRING
    return ValueMode.SCHEMA


def decode_value(raw: str, mode: int, schema: dict | None) -> Any:
    """The JSON value of a complete textual parameter value."""
    if mode == ValueMode.STRING:
        return raw
    if mode == ValueMode.SCHEMA:
        return coerce_param(raw, schema)
    return loads_or_raw(raw)


def parse_attrs(text: str) -> dict[str, str]:
    """``key="value"`` pairs of a tag (double, single or no quotes)."""
    out: dict[str, str] = {}
    for m in _ATTR.finditer(text):
        v = m.group(2)
        if v is None:
            v = m.group(3) if m.group(3) is not None else m.group(4)
        out[m.group(1)] = v
    return out


_BAD_NAME = re.compile(r"[\s<>{}\"']")


def valid_name(name: str) -> bool:
    """A plausible function name: non-empty, at most 256 chars, no whitespace / markup / quotes."""
    return 0 < len(name) <= 256 and _BAD_NAME.search(name) is None


class ArgsWriter:
    """Builds the arguments JSON object of one call as a sequence of ``out.args`` pieces."""

    __slots__ = ("opened",)

    def __init__(self) -> None:
        self.opened = False

    def key(self, out: ScanOutput, key: str) -> None:
        """Start member ``key`` (the value follows)."""
        out.args(("{" if not self.opened else ", ") + json.dumps(key, ensure_ascii=False) + ": ")
        self.opened = True

    def member(self, out: ScanOutput, key: str, value: Any) -> None:
        self.key(out, key)
        out.args(json.dumps(value, ensure_ascii=False))

    def close(self, out: ScanOutput) -> None:
        """Close the object (nothing when no member was written: the engine then emits ``{}``)."""
        if self.opened:
            out.args("}")
        self.opened = False


# XmlCallScanner states
_BETWEEN = 0  # looking for the next call (or the region end)
_OPEN = 1  # inside the call's opening tag (attributes)
_BODY = 2  # inside a call, between parameters
_PARAM = 3  # inside a parameter's opening tag
_PSTR = 4  # inside a streamed string value
_PACC = 5  # inside a value parsed at its end
_JSON = 6  # inside a raw JSON body
_TAIL = 7  # after the JSON body / skipping a broken call up to its end
_SKIP = 8  # skipping a nameless call


class MarkerSearch:
    """Resumable searches over an append-only buffer (never re-reads text that was already searched)."""

    __slots__ = ("mark", "pos")

    def __init__(self, pos: int) -> None:
        self.pos = pos  # consumed up to here
        self.mark = pos  # searches resume here

    def goto(self, pos: int) -> None:
        self.pos = pos
        self.mark = pos

    def find(self, buf: str, token: str) -> int:
        i = buf.find(token, self.mark)
        if i < 0:
            self.mark = max(self.mark, len(buf) - len(token) + 1)
        return i

    def search(self, buf: str, rx: re.Pattern[str], maxlen: int) -> re.Match[str] | None:
        m = rx.search(buf, self.mark)
        if m is None:
            self.mark = max(self.mark, len(buf) - maxlen + 1)
        return m


def alternation(*tokens: str) -> tuple[re.Pattern[str], int]:
    """A regex finding the earliest of ``tokens`` (longest first at one offset) and their max length."""
    alts = sorted(tokens, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in alts)), max(len(t) for t in tokens)


class XmlCallScanner(SectionScanner):
    """Scanner for invoke/parameter style regions (see module docstring); subclasses set the literals."""

    region_close: ClassVar[str]
    call_open: ClassVar[str]
    call_open_end: ClassVar[str] = ">"
    param_open: ClassVar[str]
    param_open_end: ClassVar[str] = ">"
    param_close: ClassVar[str]
    call_close: ClassVar[str]
    json_body: ClassVar[bool] = False  # a body starting with '{' is the raw JSON arguments object

    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        cls = type(self)
        self.cur = MarkerSearch(len(marker))
        self.state = _BETWEEN
        self.named = False
        self.fn = ""
        self.writer = ArgsWriter()
        self.body_checked = False
        self.key = ""
        self.mode = ValueMode.JSON
        self.schema: dict | None = None
        self.jargs: RawJsonArgs | None = None
        self.rx_between = _rx_cache(cls, "b", (cls.call_open, cls.region_close))
        self.rx_body = _rx_cache(cls, "c", (cls.param_open, cls.call_close))

    # ----- family hooks ---------------------------------------------------------------------------
    def call_name(self, attrs: str) -> str | None:
        """Function name from the call tag's attribute text (None: not a usable call)."""
        name = parse_attrs(attrs).get("name", "").strip()
        return name if valid_name(name) else None

    def param_spec(self, attrs: str) -> tuple[str, int, dict | None] | None:
        """``(key, ValueMode, schema)`` of a parameter from its tag's attribute text (None: skip it)."""
        key = parse_attrs(attrs).get("name")
        if key is None:
            return None
        schema = self.parser.param_schema(self.fn, key)
        return key, value_mode(schema), schema

    # ----- engine -----------------------------------------------------------------------------------
    def _end_call(self, out: ScanOutput) -> None:
        self.writer.close(out)
        out.end_call()

    def _final(self, buf: str, out: ScanOutput, call_open: bool) -> None:
        if call_open:
            self._end_call(out)
        if self.named:
            out.finish(len(buf))
        else:
            out.reject(len(self.marker))

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        cur = self.cur
        while True:
            st = self.state
            if st == _BETWEEN:
                m = cur.search(buf, self.rx_between[0], self.rx_between[1])
                if m is None:
                    if final:
                        self._final(buf, out, False)
                    return
                if m.group() == self.region_close:
                    if self.named:
                        out.finish(m.end())
                    else:
                        out.reject(len(self.marker))
                    return
                cur.goto(m.end())
                self.state = _OPEN
            elif st == _OPEN:
                at = cur.find(buf, self.call_open_end)
                if at < 0:
                    if final:
                        self._final(buf, out, False)
                    return
                name = self.call_name(buf[cur.pos : at])
                cur.goto(at + len(self.call_open_end))
                if name is None:
                    self.state = _SKIP
                    continue
                self.fn = name
                self.named = True
                out.name(name)
                self.writer = ArgsWriter()
                self.body_checked = not self.json_body
                self.state = _BODY
            elif st == _BODY:
                if not self.body_checked:
                    p = skip_ws(buf, cur.pos)
                    if p >= len(buf):
                        if final:
                            self._final(buf, out, True)
                        return
                    self.body_checked = True
                    if buf[p] == "{":
                        self.jargs = RawJsonArgs(p)
                        self.state = _JSON
                        continue
                m = cur.search(buf, self.rx_body[0], self.rx_body[1])
                if m is None:
                    if final:
                        self._final(buf, out, True)
                    return
                cur.goto(m.end())
                if m.group() == self.call_close:
                    self._end_call(out)
                    self.state = _BETWEEN
                else:
                    self.state = _PARAM
            elif st == _PARAM:
                at = cur.find(buf, self.param_open_end)
                if at < 0:
                    if final:
                        self._final(buf, out, True)
                    return
                spec = self.param_spec(buf[cur.pos : at])
                cur.goto(at + len(self.param_open_end))
                if spec is None:
                    self.mode = -1  # skip the value
                    self.state = _PACC
                    continue
                self.key, self.mode, self.schema = spec
                if self.mode == ValueMode.STRING:
                    self.writer.key(out, self.key)
                    out.args('"')
                    self.state = _PSTR
                else:
                    self.state = _PACC
            elif st == _PSTR:
                at = cur.find(buf, self.param_close)
                if at >= 0:
                    out.args(json_fragment(buf[cur.pos : at]) + '"')
                    cur.goto(at + len(self.param_close))
                    self.state = _BODY
                    continue
                end = len(buf) if final else len(buf) - held_suffix_len(buf, (self.param_close,), cur.pos)
                if end > cur.pos:
                    out.args(json_fragment(buf[cur.pos : end]))
                    cur.goto(end)
                if final:
                    out.args('"')
                    self._final(buf, out, True)
                return
            elif st == _PACC:
                at = cur.find(buf, self.param_close)
                if at < 0 and not final:
                    return
                raw = buf[cur.pos : at if at >= 0 else len(buf)]
                if self.mode >= 0:
                    self.writer.member(out, self.key, decode_value(raw, self.mode, self.schema))
                if at < 0:
                    self._final(buf, out, True)
                    return
                cur.goto(at + len(self.param_close))
                self.state = _BODY
            elif st == _JSON:
                ja = self.jargs
                assert ja is not None
                r = ja.step(buf, final, out)
                if r == PENDING:
                    return
                # DONE: the object is complete; otherwise it was closed at its last safe point.
                cur.goto(ja.end if ja.end >= 0 else max(ja.scanner.pos, cur.pos))
                self.state = _TAIL
            elif st in (_TAIL, _SKIP):
                at = cur.find(buf, self.call_close)
                if at < 0:
                    if final:
                        self._final(buf, out, st == _TAIL)
                    return
                cur.goto(at + len(self.call_close))
                if st == _TAIL:
                    out.end_call()
                self.state = _BETWEEN


_RX: dict[tuple[type, str], tuple[re.Pattern[str], int]] = {}


def _rx_cache(cls: type, kind: str, tokens: tuple[str, ...]) -> tuple[re.Pattern[str], int]:
    hit = _RX.get((cls, kind))
    if hit is None:
        hit = _RX[(cls, kind)] = alternation(*tokens)
    return hit


class _MinimaxScanner(XmlCallScanner):
    region_close = "</minimax:tool_call>"
    call_open = "<invoke"
    param_open = "<parameter"
    param_close = "</parameter>"
    call_close = "</invoke>"


class MinimaxM2ToolParser(ToolParser):
    """``minimax_m2``: ``<minimax:tool_call><invoke name=..><parameter name=..>v</parameter>...``."""

    name = "minimax_m2"
    start_markers = ("<minimax:tool_call>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _MinimaxScanner(self, marker)
