"""GLM-4.5/4.6 (``glm45_moe``) and GLM-4.7/5 (``glm47_moe``) tool-call parsers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.glm import Glm45MoeToolParser, Glm47MoeToolParser
from tests.unit.parsers.tools.tool_test_support import CUTS, calls_of, check_stream, split_at

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "detailed": {"type": "boolean"},
                    "opts": {"type": "object"},
                    "zip": {"type": "string"},
                },
            },
        },
    },
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}},
]


def call45(name: str, **kv: str) -> str:
    body = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n" for k, v in kv.items())
    return f"<tool_call>{name}\n{body}</tool_call>"


def call47(name: str, **kv: str) -> str:
    body = "".join(f"<arg_key>{k}</arg_key><arg_value>{v}</arg_value>" for k, v in kv.items())
    return f"<tool_call>{name}{body}</tool_call>"


G45 = (
    "I'll check the weather in both cities.\n"
    + call45("get_weather", city="北京", days="3", detailed="true", zip="00501")
    + "\n"
    + call45("search", q='say "hi"\nnext line', opts='{"k": [1, 2]}')
)
G47 = "好的。" + call47("get_weather", city="Paris", days="2") + call47("search") + "\nDone"

SAMPLES45 = [
    G45,
    G45 + "\nThen some text.",
    call45("unknown_fn", a="1") + "\n" + call45("get_weather", city="Rome"),
    call45("get_weather", city="Tok")[:-25],  # truncated mid-value
    '<tool_call>{"name": "qwen_style"}</tool_call>',  # not GLM: normal text
    "a < b and <tool_ca",
    call45("get_weather", opts="{broken") + " <tool_call>",
]
SAMPLES47 = [G47, call47("get_weather", city="a<b", days="x"), call47("get_weather", city="Rome")[:-12]]


def test_glm45_one_shot_with_schema() -> None:
    r = Glm45MoeToolParser(TOOLS).parse(G45)
    assert r.normal_text == "I'll check the weather in both cities.\n"
    assert calls_of(r) == [
        ("get_weather", {"city": "北京", "days": 3, "detailed": True, "zip": "00501"}),
        ("search", {"q": 'say "hi"\nnext line', "opts": {"k": [1, 2]}}),
    ]


def test_glm45_without_schema_infers_json() -> None:
    r = Glm45MoeToolParser().parse(G45)
    assert calls_of(r)[0] == ("get_weather", {"city": "北京", "days": 3, "detailed": True, "zip": "00501"})


def test_glm47_one_shot() -> None:
    r = Glm47MoeToolParser(TOOLS).parse(G47)
    assert r.normal_text == "好的。\nDone"
    assert calls_of(r) == [("get_weather", {"city": "Paris", "days": 2}), ("search", {})]


def test_glm47_bad_typed_value_kept_as_string() -> None:
    r = Glm47MoeToolParser(TOOLS).parse(SAMPLES47[1])
    assert calls_of(r) == [("get_weather", {"city": "a<b", "days": "x"})]


def test_unknown_tool_dropped_and_indexes_contiguous() -> None:
    r = Glm45MoeToolParser(TOOLS).parse(SAMPLES45[2])
    assert calls_of(r) == [("get_weather", {"city": "Rome"})]


def test_json_style_body_is_text() -> None:
    r = Glm45MoeToolParser().parse(SAMPLES45[4])
    assert r.calls == [] and r.normal_text == SAMPLES45[4]


def test_string_value_streams_and_holds_close_tag() -> None:
    p = Glm45MoeToolParser(TOOLS)
    text = call45("get_weather", city="Rio de Janeiro")
    cut = text.index("</arg_value>") + 4
    got = "".join(c.arguments_delta for c in p.feed(text[:cut]).calls)
    assert got.endswith('"city": "Rio de Janeiro') and "<" not in got


def test_partial_start_marker_held() -> None:
    p = Glm45MoeToolParser()
    assert p.feed("a < b and <tool_ca").normal_text == "a < b and "
    assert p.finish().normal_text == "<tool_ca"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES45), CUTS)
def test_glm45_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(Glm45MoeToolParser, text, split_at(text, cuts))
    check_stream(lambda: Glm45MoeToolParser(TOOLS), text, split_at(text, cuts))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SAMPLES47 + SAMPLES45), CUTS)
def test_glm47_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(lambda: Glm47MoeToolParser(TOOLS), text, split_at(text, cuts))
