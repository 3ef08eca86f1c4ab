"""herder.parsers.tools: sans-I/O tool-call parsers (API in ``base``, names and auto-detection in ``registry``)."""

from herder.parsers.tools.base import ToolCall, ToolCallDelta, ToolParser, ToolParseResult, ToolStreamDelta
from herder.parsers.tools.registry import detect_tool_parser, get_tool_parser, tool_parser_names

__all__ = [
    "ToolCall",
    "ToolCallDelta",
    "ToolParseResult",
    "ToolParser",
    "ToolStreamDelta",
    "detect_tool_parser",
    "get_tool_parser",
    "tool_parser_names",
]
