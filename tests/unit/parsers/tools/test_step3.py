"""Step-3 (``step3``) tool-call parser."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.step3 import Step3ToolParser
from tests.unit.parsers.tools.tool_test_support import CUTS, calls_of, check_stream, split_at

TB, TE = "<｜tool_calls_begin｜>", "<｜tool_calls_end｜>"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            },
        },
    },
    {"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {}}}},
]


def call(name: str, **kv: str) -> str:
    params = "".join(f'<steptml:parameter name="{k}">{v}</steptml:parameter>' for k, v in kv.items())
    return (
        f'<｜tool_call_begin｜>function<｜tool_sep｜><steptml:invoke name="{name}">{params}</steptml:invoke>'
        "<｜tool_call_end｜>"
    )


S3 = (
    "Let me compute that.\n"
    + TB
    + call("get_weather", city="New York", days="3")
    + "\n"
    + call("calc", expr='{"op": "+", "args": [1, 2]}')
    + TE
)
SAMPLES = [
    S3,
    S3 + " Done.",
    TB + call("nope", a="1") + call("calc", x="2") + TE,
    TB + call("get_weather", city='Zürich \\ "q"', days="many") + TE,
    TB + "garbage only" + TE + " tail",
    TB + call("get_weather", city="Lon")[:-40],
    "x <｜tool_calls_be",
]


def test_one_shot() -> None:
    r = Step3ToolParser(TOOLS).parse(S3)
    assert r.normal_text == "Let me compute that.\n"
    assert calls_of(r) == [
        ("get_weather", {"city": "New York", "days": 3}),
        ("calc", {"expr": {"op": "+", "args": [1, 2]}}),
    ]


def test_schema_coercion_failures_keep_strings() -> None:
    r = Step3ToolParser(TOOLS).parse(SAMPLES[3])
    assert calls_of(r) == [("get_weather", {"city": 'Zürich \\ "q"', "days": "many"})]


def test_unknown_tool_skipped() -> None:
    r = Step3ToolParser(TOOLS).parse(SAMPLES[2])
    assert calls_of(r) == [("calc", {"x": 2})]


def test_garbage_block_is_text() -> None:
    r = Step3ToolParser().parse(SAMPLES[4])
    assert r.calls == [] and r.normal_text == SAMPLES[4]


def test_truncated_call_is_closed() -> None:
    r = Step3ToolParser(TOOLS).parse(SAMPLES[5])
    assert [c.name for c in r.calls] == ["get_weather"]
    assert json.loads(r.calls[0].arguments)["city"].startswith("Lon")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES), CUTS)
def test_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(Step3ToolParser, text, split_at(text, cuts))
    check_stream(lambda: Step3ToolParser(TOOLS), text, split_at(text, cuts))
