"""Step-3 / Step-3.5 tool calls (``step3``).

Format (chat template of ``stepfun-ai/step3``; ``｜`` is U+FF5C)::

    <｜tool_calls_begin｜>
    <｜tool_call_begin｜>function<｜tool_sep｜><steptml:invoke name="get_weather">
    <steptml:parameter name="city">NYC</steptml:parameter>
    <steptml:parameter name="days">3</steptml:parameter>
    </steptml:invoke><｜tool_call_end｜>
    <｜tool_call_begin｜>function<｜tool_sep｜><steptml:invoke name="...">...</steptml:invoke><｜tool_call_end｜>
    <｜tool_calls_end｜>

The per-call wrapper ``<｜tool_call_begin｜>function<｜tool_sep｜>`` … ``<｜tool_call_end｜>`` is skipped as filler
between calls; the ``steptml`` invoke/parameter tags carry the call. Parameter values are literal text coerced
by the tool schema (see ``minimax.value_mode``): strings verbatim, other types parsed, unknown parameters
JSON-parsed when valid JSON.
"""

from __future__ import annotations

from herder.parsers.tools.base import SectionScanner, ToolParser
from herder.parsers.tools.minimax import XmlCallScanner

__all__ = ["Step3ToolParser"]


class _Step3Scanner(XmlCallScanner):
    region_close = "<｜tool_calls_end｜>"
    call_open = "<steptml:invoke"
    param_open = "<steptml:parameter"
    param_close = "</steptml:parameter>"
    call_close = "</steptml:invoke>"


class Step3ToolParser(ToolParser):
    """``step3``: Unicode tool-call markers wrapping ``steptml`` invoke/parameter tags."""

    name = "step3"
    start_markers = ("<｜tool_calls_begin｜>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _Step3Scanner(self, marker)
