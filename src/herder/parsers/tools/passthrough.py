"""``passthrough``: no tool-call parsing; everything is normal text (the default for unknown models)."""

from __future__ import annotations

from herder.parsers.tools.base import (
    ScanOutput,
    SectionScanner,
    ToolParser,
    ToolParseResult,
    ToolStreamDelta,
)

__all__ = ["PassthroughToolParser"]


class _NoScanner(SectionScanner):
    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:  # pragma: no cover - never created
        out.reject(len(buf))


class PassthroughToolParser(ToolParser):
    """Returns all text as normal text, immediately (nothing is held back)."""

    name = "passthrough"
    start_markers = ()

    def new_scanner(self, marker: str) -> SectionScanner:  # pragma: no cover - there are no markers
        return _NoScanner(self, marker)

    def has_tool_markers(self, text: str) -> bool:
        return False

    def parse(self, text: str) -> ToolParseResult:
        return ToolParseResult(text, [])

    def feed(self, chunk: str) -> ToolStreamDelta:
        return ToolStreamDelta(chunk, [])

    def finish(self) -> ToolStreamDelta:
        return ToolStreamDelta("", [])
