"""Kimi tool calls: ``kimik2`` (Kimi-K2 special tokens + JSON) and ``kimi_k3`` (Kimi-K3 XTML channels).

Kimi-K2 (``moonshotai/Kimi-K2-Instruct`` docs/tool_call_guidance.md)::

    <|tool_calls_section_begin|>
    <|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Beijing"}<|tool_call_end|>
    <|tool_call_begin|>functions.search:1<|tool_call_argument_begin|>{...}<|tool_call_end|>
    <|tool_calls_section_end|>

The call id is ``functions.NAME:IDX`` (``NAME:IDX`` and a bare ``NAME`` are tolerated; names may contain
dots). Streamed tool indexes are ordinals in emission order, never the model's IDX. A ``<|tool_call_begin|>``
without the section marker also opens a region (some engines drop the section token).

Kimi-K3 XTML (reconstructed from SMG's ``kimi_k3.rs`` and the K3 encoder it mirrors). ``<|open|>``,
``<|close|>`` and ``<|sep|>`` are literal texts. Grammar of the assistant output::

    output    := ( text | response | tools | stray )*
    response  := "<|open|>response<|sep|>" CONTENT ( "<|close|>response<|sep|>" | before "<|open|>tools<|sep|>" )
    stray     := "<|close|>response<|sep|>" | "<|close|>message<|sep|>"     (dropped: the prefix was prefilled)
    tools     := "<|open|>tools<|sep|>" ws ( call ws )* "<|close|>tools<|sep|>"
    call      := "<|open|>call" ATTRS "<|sep|>" ws ( argument ws )* "<|close|>call<|sep|>"
    ATTRS     := ( ws NAME '="' VALUE '"' )*      call: tool="NAME" index="N"; argument: key="K" type="T"
    argument  := "<|open|>argument" ATTRS "<|sep|>" RAW "<|close|>argument<|sep|>"

Attribute values are escaped by the encoder (``&`` -> ``&amp;``, ``"`` -> ``&quot;``) and unescaped here in the
reverse order. An argument with ``type="string"`` (or no type) is the raw text (streamed as it arrives); any
other type is JSON-decoded, falling back to the raw text when it is not valid JSON. ``index`` is ignored
(streamed indexes are ordinals). Response content is normal text, with its markers removed; text outside
channels is normal text too. Known limitation (shared with the reference): a string value containing
``<|close|>argument<|sep|>`` is cut there; markers with inner whitespace (``<|open|> tools <|sep|>``) are not
recognised.
"""

from __future__ import annotations

import re

from herder.parsers.tools.base import ScanOutput, SectionScanner, ToolParser, held_suffix_len
from herder.parsers.tools.deepseek import DelimitedJsonScanner
from herder.parsers.tools.minimax import ValueMode, XmlCallScanner, parse_attrs

__all__ = ["KimiK2ToolParser", "KimiK3ToolParser"]

# ----- Kimi-K2 ---------------------------------------------------------------------------------------

_K2_ID = re.compile(r"(?:functions\.)?([\w.\-]+?)(?::\d+)?")


class _K2Scanner(DelimitedJsonScanner):
    call_begin = "<|tool_call_begin|>"
    header_end = "<|tool_call_argument_begin|>"
    call_end = "<|tool_call_end|>"
    region_close = "<|tool_calls_section_end|>"

    def header_name(self, header: str) -> str | None:
        m = _K2_ID.fullmatch(header.strip())
        return m.group(1) if m else None


class KimiK2ToolParser(ToolParser):
    """``kimik2``: ``<|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}<|tool_call_end|>``."""

    name = "kimik2"
    start_markers = ("<|tool_calls_section_begin|>", "<|tool_call_begin|>")

    def new_scanner(self, marker: str) -> SectionScanner:
        return _K2Scanner(self, marker)


# ----- Kimi-K3 ---------------------------------------------------------------------------------------

TOOLS_OPEN = "<|open|>tools<|sep|>"
TOOLS_CLOSE = "<|close|>tools<|sep|>"
RESPONSE_OPEN = "<|open|>response<|sep|>"
RESPONSE_CLOSE = "<|close|>response<|sep|>"
MESSAGE_CLOSE = "<|close|>message<|sep|>"


def _unescape(v: str) -> str:
    return v.replace("&quot;", '"').replace("&amp;", "&")


class _K3ToolsScanner(XmlCallScanner):
    region_close = TOOLS_CLOSE
    call_open = "<|open|>call"
    call_open_end = "<|sep|>"
    param_open = "<|open|>argument"
    param_open_end = "<|sep|>"
    param_close = "<|close|>argument<|sep|>"
    call_close = "<|close|>call<|sep|>"

    def call_name(self, attrs: str) -> str | None:
        name = _unescape(parse_attrs(attrs).get("tool", "")).strip()
        return name if name and len(name) <= 256 else None

    def param_spec(self, attrs: str) -> tuple[str, int, dict | None] | None:
        a = parse_attrs(attrs)
        key = a.get("key")
        if key is None:
            return None
        typ = a.get("type", "string")
        return _unescape(key), (ValueMode.STRING if typ == "string" else ValueMode.JSON), None


class _ResponseScanner(SectionScanner):
    """``<|open|>response<|sep|>`` content is normal text up to its close marker (or a tools channel)."""

    _ENDS = (RESPONSE_CLOSE, TOOLS_OPEN)

    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self.pos = len(marker)

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        best = -1
        which = ""
        for end in self._ENDS:
            i = buf.find(end, self.pos)  # a marker cannot start in released text: its prefix was held
            if i >= 0 and (best < 0 or i < best):
                best, which = i, end
        if best >= 0:
            out.text(buf[self.pos : best])
            out.finish(best + len(which) if which == RESPONSE_CLOSE else best)
            return
        stop = len(buf) if final else len(buf) - held_suffix_len(buf, self._ENDS, self.pos)
        out.text(buf[self.pos : stop])
        self.pos = stop
        if final:
            out.finish(len(buf))


class _DropScanner(SectionScanner):
    """A stray close marker (its opener was part of the prompt): removed."""

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        out.finish(len(self.marker))


class KimiK3ToolParser(ToolParser):
    """``kimi_k3``: XTML ``tools`` channel with ``call``/``argument`` blocks; ``response`` unwrapped."""

    name = "kimi_k3"
    start_markers = (TOOLS_OPEN, RESPONSE_OPEN, RESPONSE_CLOSE, MESSAGE_CLOSE)

    def has_tool_markers(self, text: str) -> bool:
        return TOOLS_OPEN in text

    def new_scanner(self, marker: str) -> SectionScanner:
        if marker == TOOLS_OPEN:
            return _K3ToolsScanner(self, marker)
        if marker == RESPONSE_OPEN:
            return _ResponseScanner(self, marker)
        return _DropScanner(self, marker)
