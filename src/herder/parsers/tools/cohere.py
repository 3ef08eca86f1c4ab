"""``cohere`` (Command R / A, CMD3/CMD4): ``<|START_ACTION|>`` + a JSON object or array of
``{"tool_name": ..., "parameters": {...}}`` + ``<|END_ACTION|>``; ``<|START_RESPONSE|>...<|END_RESPONSE|>``
is normal text with the two markers stripped."""

from __future__ import annotations

from herder.parsers.tools.base import ScanOutput, SectionScanner, ToolParser, held_suffix_len
from herder.parsers.tools.json_parser import CallSpec, JsonCallsScanner

__all__ = ["CohereToolParser"]

START_ACTION = "<|START_ACTION|>"
END_ACTION = "<|END_ACTION|>"
START_RESPONSE = "<|START_RESPONSE|>"
END_RESPONSE = "<|END_RESPONSE|>"

_SPEC = CallSpec(
    name_keys=frozenset({"tool_name", "name"}),
    args_keys=frozenset({"parameters", "arguments"}),
    extra_first_keys=frozenset({"tool_call_id", "id", "type"}),
)


class _ResponseScanner(SectionScanner):
    """Emits the response block's text as normal text, without its markers."""

    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self._pos = len(marker)

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        end = buf.find(END_RESPONSE, max(self._pos - len(END_RESPONSE) + 1, len(self.marker)))
        if end >= 0:
            out.text(buf[self._pos : end])
            out.finish(end + len(END_RESPONSE))
            return
        stop = len(buf) if final else len(buf) - held_suffix_len(buf, (END_RESPONSE,), self._pos)
        out.text(buf[self._pos : stop])
        self._pos = stop
        if final:
            out.finish(len(buf))


class CohereToolParser(ToolParser):
    """Cohere action / response blocks."""

    name = "cohere"
    start_markers = (START_ACTION, START_RESPONSE)

    def new_scanner(self, marker: str) -> SectionScanner:
        if marker == START_RESPONSE:
            return _ResponseScanner(self, marker)
        return JsonCallsScanner(self, marker, spec=_SPEC, end_marker=END_ACTION)

    def has_tool_markers(self, text: str) -> bool:
        return START_ACTION in text
