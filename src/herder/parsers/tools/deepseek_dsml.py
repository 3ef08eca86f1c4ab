"""DeepSeek DSML tool calls: ``deepseek32`` (V3.2, ``function_calls``) and ``deepseek_v4`` (V4, ``tool_calls``).

Format (``｜`` is U+FF5C; the two versions differ only in the block name)::

    <｜DSML｜function_calls>
    <｜DSML｜invoke name="get_weather">
    <｜DSML｜parameter name="city" string="true">Hangzhou</｜DSML｜parameter>
    <｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>
    </｜DSML｜invoke>
    </｜DSML｜function_calls>

``string="true"``: the value is the raw string (streamed as it arrives); ``string="false"``: the value is JSON
(the raw text is kept as a string when it is not valid JSON); no ``string`` attribute: coerced by the tool
schema like the other XML families. Fallback: an invoke whose body starts with ``{`` holds the raw JSON
arguments object (``<｜DSML｜invoke name="f">{"city": "x"}</｜DSML｜invoke>``), streamed as it arrives.
"""

from __future__ import annotations

from herder.parsers.tools.base import SectionScanner, ToolParser
from herder.parsers.tools.minimax import ValueMode, XmlCallScanner, parse_attrs, value_mode

__all__ = ["DeepSeekV4ToolParser", "DeepSeekV32ToolParser"]


class _DsmlScanner(XmlCallScanner):
    call_open = "<｜DSML｜invoke"
    param_open = "<｜DSML｜parameter"
    param_close = "</｜DSML｜parameter>"
    call_close = "</｜DSML｜invoke>"
    json_body = True

    def param_spec(self, attrs: str) -> tuple[str, int, dict | None] | None:
        a = parse_attrs(attrs)
        key = a.get("name")
        if key is None:
            return None
        flag = a.get("string")
        if flag == "true":
            return key, ValueMode.STRING, None
        if flag == "false":
            return key, ValueMode.JSON, None
        schema = self.parser.param_schema(self.fn, key)
        return key, value_mode(schema), schema


class _V32Scanner(_DsmlScanner):
    region_close = "</｜DSML｜function_calls>"


class _V4Scanner(_DsmlScanner):
    region_close = "</｜DSML｜tool_calls>"


class DeepSeekV32ToolParser(ToolParser):
    """``deepseek32``: DSML ``<｜DSML｜function_calls>`` blocks (DeepSeek-V3.2)."""

    name = "deepseek32"
    start_markers = ("<｜DSML｜function_calls>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _V32Scanner(self, marker)


class DeepSeekV4ToolParser(ToolParser):
    """``deepseek_v4``: DSML ``<｜DSML｜tool_calls>`` blocks (DeepSeek-V4)."""

    name = "deepseek_v4"
    start_markers = ("<｜DSML｜tool_calls>",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _V4Scanner(self, marker)
