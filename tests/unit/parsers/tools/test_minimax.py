"""MiniMax-M2 (``minimax_m2``) tool-call parser."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.minimax import MinimaxM2ToolParser
from tests.unit.parsers.tools.tool_test_support import CUTS, calls_of, check_stream, split_at

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_web",
            "parameters": {
                "type": "object",
                "properties": {
                    "query_tag": {"type": "array", "items": {"type": "string"}},
                    "query_list": {"type": "array"},
                    "limit": {"type": "integer"},
                    "safe": {"type": "boolean"},
                    "note": {"type": ["string", "null"]},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {"content": {"type": "string"}, "path": {"type": "string"}},
            },
        },
    },
]


def invoke(name: str, **kv: str) -> str:
    params = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in kv.items())
    return f'<invoke name="{name}">\n{params}</invoke>\n'


MM = (
    "<think>ignored by this parser</think>\nI'll search and save.\n"
    "<minimax:tool_call>\n"
    + invoke(
        "search_web",
        query_tag='["technology", "events"]',
        query_list='["OpenAI", "\\"quoted\\""]',
        limit="10",
        safe="True",
        note="42",
    )
    + invoke("write_file", path="/tmp/a.py", content='def f(x):\n    return "<tag>" + x\n')
    + "</minimax:tool_call>"
)
SAMPLES = [
    MM,
    MM + "\n\n<minimax:tool_call>\n" + invoke("write_file", path="b") + "</minimax:tool_call>",
    "<minimax:tool_call>\n"
    + invoke("ghost", a="1")
    + invoke("write_file", path="c")
    + "</minimax:tool_call>",
    "<minimax:tool_call>no invoke here</minimax:tool_call>",
    "<minimax:tool_call>\n" + invoke("write_file", content="partial cont")[:-30],
    '<minimax:tool_call><invoke name="write_file"><parameter name="content">x</param',
    "just text < minimax",
]


def test_one_shot_schema() -> None:
    r = MinimaxM2ToolParser(TOOLS).parse(MM)
    assert r.normal_text == "<think>ignored by this parser</think>\nI'll search and save.\n"
    assert calls_of(r) == [
        (
            "search_web",
            {
                "query_tag": ["technology", "events"],
                "query_list": ["OpenAI", '"quoted"'],
                "limit": 10,
                "safe": True,
                "note": "42",
            },
        ),
        ("write_file", {"path": "/tmp/a.py", "content": 'def f(x):\n    return "<tag>" + x\n'}),
    ]


def test_one_shot_no_schema_infers() -> None:
    r = MinimaxM2ToolParser().parse(MM)
    assert json.loads(r.calls[0].arguments)["limit"] == 10
    assert json.loads(r.calls[0].arguments)["safe"] == "True"  # not JSON -> string


def test_unknown_invoke_skipped_in_shared_block() -> None:
    r = MinimaxM2ToolParser(TOOLS).parse(SAMPLES[2])
    assert calls_of(r) == [("write_file", {"path": "c"})]


def test_block_without_invoke_is_text() -> None:
    r = MinimaxM2ToolParser().parse(SAMPLES[3])
    assert r.calls == [] and r.normal_text == SAMPLES[3]


def test_truncated_string_param_releases_held_text_at_end() -> None:
    r = MinimaxM2ToolParser(TOOLS).parse(SAMPLES[5])
    assert calls_of(r) == [("write_file", {"content": "x</param"})]  # at the end, held text is released


def test_content_streams_before_close() -> None:
    p = MinimaxM2ToolParser(TOOLS)
    cut = MM.index("return")
    got = "".join(c.arguments_delta for c in p.feed(MM[:cut]).calls if c.index == 1)
    assert got.endswith('"content": "def f(x):\\n    ')


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES), CUTS)
def test_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(MinimaxM2ToolParser, text, split_at(text, cuts))
    check_stream(lambda: MinimaxM2ToolParser(TOOLS), text, split_at(text, cuts))
