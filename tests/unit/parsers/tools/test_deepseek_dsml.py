"""DeepSeek DSML tool-call parsers (``deepseek32`` V3.2, ``deepseek_v4`` V4)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.deepseek_dsml import DeepSeekV4ToolParser, DeepSeekV32ToolParser
from tests.unit.parsers.tools.tool_test_support import CUTS, calls_of, check_stream, split_at

D = "｜DSML｜"


def block(kind: str, *invokes: str) -> str:
    return f"<{D}{kind}>\n" + "".join(invokes) + f"</{D}{kind}>"


def invoke(name: str, *params: str) -> str:
    return f'<{D}invoke name="{name}">\n' + "".join(params) + f"</{D}invoke>\n"


def param(key: str, value: str, string: str | None = "true") -> str:
    attr = "" if string is None else f' string="{string}"'
    return f'<{D}parameter name="{key}"{attr}>{value}</{D}parameter>\n'


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
    {"type": "function", "function": {"name": "run_code", "parameters": {"type": "object"}}},
]

V32 = "Let me check both.\n\n" + block(
    "function_calls",
    invoke("get_weather", param("city", '杭州 "West Lake" \\ <b>'), param("days", "3", "false")),
    invoke(
        "run_code",
        param("code", "print('hi')\nfor i in range(3):\n    print(i)"),
        param("opts", '{"t": [1, 2]}', "false"),
    ),
)
V4 = block(
    "tool_calls",
    invoke("get_weather", param("city", "Paris")),
    f'<{D}invoke name="run_code">{{"code": "x = 1", "n": 2}}</{D}invoke>',
)

SAMPLES32 = [
    V32,
    V32 + "\nAfter the calls.",
    block("function_calls", invoke("get_weather", param("days", "3", None), param("city", "42", None))),
    block("function_calls", invoke("unknown", param("a", "1")), invoke("get_weather", param("city", "Rome"))),
    block("function_calls", invoke("get_weather", param("days", "not json", "false"))),
    block("function_calls", invoke("get_weather", param("city", "Tok")))[:-40],  # truncated
    f"<{D}function_calls>\njust words, no invoke</{D}function_calls>",
    f'<{D}function_calls><{D}invoke name="">x</{D}invoke></{D}function_calls>',
    "text <｜DSML｜function_ca",
]


def test_v32_one_shot() -> None:
    r = DeepSeekV32ToolParser().parse(V32)
    assert r.normal_text == "Let me check both.\n\n"
    assert calls_of(r) == [
        ("get_weather", {"city": '杭州 "West Lake" \\ <b>', "days": 3}),
        ("run_code", {"code": "print('hi')\nfor i in range(3):\n    print(i)", "opts": {"t": [1, 2]}}),
    ]


def test_v4_one_shot_with_json_body_fallback() -> None:
    r = DeepSeekV4ToolParser().parse(V4 + " bye")
    assert r.normal_text == " bye"
    assert calls_of(r) == [("get_weather", {"city": "Paris"}), ("run_code", {"code": "x = 1", "n": 2})]


def test_versions_do_not_cross() -> None:
    assert DeepSeekV4ToolParser().parse(V32).calls == []
    assert DeepSeekV32ToolParser().parse(V4).normal_text == V4


def test_string_false_invalid_json_kept_as_string() -> None:
    r = DeepSeekV32ToolParser().parse(SAMPLES32[4])
    assert calls_of(r) == [("get_weather", {"days": "not json"})]


def test_missing_string_attr_uses_schema() -> None:
    text = SAMPLES32[2]
    assert calls_of(DeepSeekV32ToolParser(TOOLS).parse(text)) == [("get_weather", {"days": 3, "city": "42"})]
    # without tools: JSON if it parses
    assert calls_of(DeepSeekV32ToolParser().parse(text)) == [("get_weather", {"days": 3, "city": 42})]


def test_unknown_tool_skipped() -> None:
    r = DeepSeekV32ToolParser(TOOLS).parse(SAMPLES32[3])
    assert calls_of(r) == [("get_weather", {"city": "Rome"})]
    assert r.normal_text == ""


def test_malformed_block_is_text() -> None:
    for text in (SAMPLES32[6], SAMPLES32[7]):
        r = DeepSeekV32ToolParser().parse(text)
        assert r.calls == [] and r.normal_text == text


def test_truncated_string_value_closed() -> None:
    r = DeepSeekV32ToolParser().parse(SAMPLES32[5])
    assert r.calls[0].name == "get_weather"
    assert json.loads(r.calls[0].arguments)["city"].startswith("Tok")


def test_string_value_streams_before_its_end() -> None:
    p = DeepSeekV32ToolParser()
    cut = V32.index("for i in")
    deltas = [p.feed(V32[:cut])]
    streamed = "".join(c.arguments_delta for d in deltas for c in d.calls if c.index == 1)
    assert streamed.endswith("print('hi')\\n")
    assert "</" not in streamed


def test_partial_close_tag_never_leaks() -> None:
    p = DeepSeekV32ToolParser()
    text = block("function_calls", invoke("get_weather", param("city", "Paris")))
    cut = text.index(f"</{D}parameter>") + 5
    got = "".join(c.arguments_delta for c in p.feed(text[:cut]).calls)
    assert got.endswith('"Paris') and "<" not in got


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES32), CUTS)
def test_v32_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(DeepSeekV32ToolParser, text, split_at(text, cuts))
    check_stream(lambda: DeepSeekV32ToolParser(TOOLS), text, split_at(text, cuts))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([V4, V4 + "x", V4[:-30]]), CUTS)
def test_v4_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(DeepSeekV4ToolParser, text, split_at(text, cuts))
