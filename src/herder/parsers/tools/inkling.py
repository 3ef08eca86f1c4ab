"""``inkling`` (TML): ``<|message_model|>NAME<|content_invoke_tool_json|>{"name": ..., "args": {...}}
<|end_message|>``. Other model messages (another content kind after the header) are normal text."""

from __future__ import annotations

import re

from herder.parsers.tools.base import ScanOutput, SectionScanner, ToolParser, expect_at
from herder.parsers.tools.json_parser import CallSpec, JsonCallsScanner

__all__ = ["InklingToolParser"]

START = "<|message_model|>"
INVOKE = "<|content_invoke_tool_json|>"
END = "<|end_message|>"

_HEADER = re.compile(r"[^<\n]*")
_MAX_HEADER = 256
_SPEC = CallSpec(args_keys=frozenset({"args", "arguments", "parameters"}))


class _InklingScanner(SectionScanner):
    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self._body: JsonCallsScanner | None = None

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        if self._body is None:
            skip = len(self.marker)
            q = _HEADER.match(buf, skip).end()  # type: ignore[union-attr]
            if q - skip > _MAX_HEADER:
                out.reject(skip)
                return
            r = expect_at(buf, q, INVOKE, final) if q < len(buf) or final else 0
            if r < 0:
                out.reject(skip)
            if r != 1:
                return
            self._body = JsonCallsScanner(
                self.parser, self.marker, spec=_SPEC, allow_array=False, end_marker=END, start=q + len(INVOKE)
            )
        self._body.scan(buf, final, out)


class InklingToolParser(ToolParser):
    """Inkling tool-invocation messages."""

    name = "inkling"
    start_markers = (START,)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _InklingScanner(self, marker)

    def has_tool_markers(self, text: str) -> bool:
        return INVOKE in text
