"""``llama`` (Llama 3.2): ``<|python_tag|>`` + JSON ``{"name": ..., "parameters": {...}}``; plain JSON
objects are accepted too; several calls may be separated by ``;``."""

from __future__ import annotations

from herder.parsers.tools.base import SectionScanner, ToolParser
from herder.parsers.tools.json_parser import CallSpec, JsonCallsScanner

__all__ = ["LlamaToolParser"]

_SPEC = CallSpec(args_keys=frozenset({"parameters", "arguments"}))


class LlamaToolParser(ToolParser):
    """Llama 3.x JSON tool calls (with or without the python tag)."""

    name = "llama"
    start_markers = ("<|python_tag|>", "{")

    def new_scanner(self, marker: str) -> SectionScanner:
        return JsonCallsScanner(
            self, marker, spec=_SPEC, include_marker=marker == "{", allow_array=False, separator=";"
        )
