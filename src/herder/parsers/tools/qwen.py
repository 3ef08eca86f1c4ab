"""``qwen``: each call is ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` (several allowed)."""

from __future__ import annotations

from herder.parsers.tools.base import SectionScanner, ToolParser
from herder.parsers.tools.json_parser import JsonCallsScanner

__all__ = ["QwenToolParser"]


class QwenToolParser(ToolParser):
    """Qwen 2.5 / Qwen 3 (Hermes-style) tool calls; text outside the tags is normal text."""

    name = "qwen"
    start_markers = ("<tool_call>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return JsonCallsScanner(self, marker, allow_array=False, end_marker="</tool_call>")
