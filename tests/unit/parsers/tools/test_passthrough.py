"""passthrough tool parser: everything is normal text, nothing is held back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import ToolParseResult, stream_chunks
from herder.parsers.tools.passthrough import PassthroughToolParser
from tests.unit.parsers.tools.tool_test_support import split_sizes

MARKUP = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call> [f()] [TOOL_CALLS] {"name": "g"}'


def test_one_shot_and_streaming_return_text_unchanged() -> None:
    p = PassthroughToolParser([{"type": "function", "function": {"name": "f"}}])
    assert p.parse(MARKUP) == ToolParseResult(MARKUP, [])
    assert not p.has_tool_markers(MARKUP)
    assert p.feed("<tool_").normal_text == "<tool_"  # not held back
    assert p.finish().normal_text == ""


@settings(max_examples=100, deadline=None)
@given(st.text(), st.lists(st.integers(1, 9), min_size=1))
def test_property_chunking(text: str, sizes: list[int]) -> None:
    assert stream_chunks(PassthroughToolParser(), split_sizes(text, sizes)) == ToolParseResult(text, [])
