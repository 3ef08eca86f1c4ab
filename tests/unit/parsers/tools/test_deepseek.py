"""DeepSeek-V3 (``deepseek``) and V3.1 (``deepseek31``) tool-call parsers: one-shot, streaming, chunk splits."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.deepseek import DeepSeekV3ToolParser, DeepSeekV31ToolParser
from tests.unit.parsers.tools.tool_test_support import check_stream, split_at, stream_deltas

B, CB, SEP, CE, E = (
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁sep｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁calls▁end｜>",
)
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}},
]


def v3_call(name: str, args: str) -> str:
    return f"{CB}function{SEP}{name}\n```json\n{args}\n```{CE}"


def v31_call(name: str, args: str) -> str:
    return f"{CB}{name}{SEP}{args}{CE}"


V3_TWO = (
    "I'll look both up.\n\n"
    + B
    + v3_call("get_weather", '{"location": "東京", "unit": "celsius"}')
    + "\n"
    + v3_call("web_search", '{"query": "say \\"hi\\" \\\\ ok", "filters": {"lang": ["ja", "en"], "max": 5}}')
    + E
    + " Done."
)
V31_TWO = (
    "Checking."
    + B
    + v31_call("get_weather", '{"location": "Paris, 🇫🇷", "days": 3}')
    + v31_call("web_search", '{"query": "a\\nb", "nested": {"x": [1, 2.5e-3, null, true]}}')
    + E
)

V3_SAMPLES = [
    V3_TWO,
    "plain answer, no tools at all",
    B + v3_call("get_weather", '{"location": "Tokyo"') + E,  # unterminated object
    B + v3_call("get_weather", "not json at all") + E,  # malformed: normal text
    B + v3_call("get_weather", "{}") + "\n" + v3_call("web_search", "[1, 2]") + E + "tail",
    B + v3_call("unknown_tool", '{"a": 1}') + "\n" + v3_call("web_search", '{"q": "x"}') + E,
    "text " + B + v3_call("get_weather", '{"location": "Tok')[:-21],  # truncated stream
    "x <｜tool▁calls▁beg",  # partial marker at the end
]
V31_SAMPLES = [
    V31_TWO,
    B + v31_call("get_weather", '{"a": 1}') + "junk after" + E,
    B + v31_call("", '{"a": 1}') + E,
    B + v31_call("get_weather", '{"a": tru') + E,
    "x" + B + v31_call("web_search", '{"q": "\\u00e9t\\u00e9"}') + "   " + E + "\nok",
]


def test_v3_one_shot() -> None:
    r = DeepSeekV3ToolParser().parse(V3_TWO)
    assert r.normal_text == "I'll look both up.\n\n Done."
    assert [c.name for c in r.calls] == ["get_weather", "web_search"]
    assert json.loads(r.calls[0].arguments) == {"location": "東京", "unit": "celsius"}
    assert json.loads(r.calls[1].arguments) == {
        "query": 'say "hi" \\ ok',
        "filters": {"lang": ["ja", "en"], "max": 5},
    }


def test_v31_one_shot() -> None:
    r = DeepSeekV31ToolParser().parse(V31_TWO)
    assert r.normal_text == "Checking."
    assert [c.name for c in r.calls] == ["get_weather", "web_search"]
    assert json.loads(r.calls[1].arguments)["nested"] == {"x": [1, 0.0025, None, True]}


def test_v3_format_is_not_v31() -> None:
    # V3.1's "NAME<sep>{json}" read by the V3 parser: the name line never comes -> not a call.
    r = DeepSeekV3ToolParser().parse(V31_TWO)
    assert r.calls == [] and r.normal_text == V31_TWO


def test_no_markers_is_plain_text() -> None:
    assert DeepSeekV3ToolParser().parse("hello").normal_text == "hello"


def test_malformed_first_call_becomes_text() -> None:
    text = B + v3_call("get_weather", "not json at all") + E
    r = DeepSeekV3ToolParser().parse(text)
    assert r.calls == [] and r.normal_text == text


def test_malformed_later_call_ends_region() -> None:
    bad = v3_call("web_search", "[1, 2]")
    text = B + v3_call("get_weather", "{}") + "\n" + bad + E + "tail"
    r = DeepSeekV3ToolParser().parse(text)
    assert [c.name for c in r.calls] == ["get_weather"]
    assert r.normal_text == bad + E + "tail"  # the separator newline was consumed with the call


def test_truncated_arguments_are_closed() -> None:
    r = DeepSeekV3ToolParser().parse("text " + B + v3_call("get_weather", '{"location": "Tok')[:-21])
    assert r.normal_text == "text "
    assert json.loads(r.calls[0].arguments) == {"location": "Tok"}


def test_invalid_json_midway_closed_at_safe_point() -> None:
    r = DeepSeekV31ToolParser().parse(B + v31_call("get_weather", '{"a": 1, "b": tru') + E)
    assert json.loads(r.calls[0].arguments) == {"a": 1}


def test_unknown_tool_skipped_indexes_contiguous() -> None:
    text = B + v3_call("unknown_tool", '{"a": 1}') + "\n" + v3_call("web_search", '{"q": "x"}') + E
    r = DeepSeekV3ToolParser(TOOLS).parse(text)
    assert [c.name for c in r.calls] == ["web_search"]
    p = DeepSeekV3ToolParser(TOOLS)
    deltas = stream_deltas(p, list(text))
    assert {c.index for d in deltas for c in d.calls} == {0}


def test_streaming_char_by_char_and_holds_partial_markers() -> None:
    p = DeepSeekV3ToolParser()
    seen = ""
    for ch in V3_TWO[: V3_TWO.index(B) + 5]:
        seen += p.feed(ch).normal_text
    assert seen == "I'll look both up.\n\n"  # the partial begin marker is held, never leaked
    check_stream(DeepSeekV3ToolParser, V3_TWO, list(V3_TWO))
    check_stream(DeepSeekV31ToolParser, V31_TWO, list(V31_TWO))


def test_arguments_stream_before_call_end() -> None:
    p = DeepSeekV31ToolParser()
    text = B + v31_call("get_weather", '{"location": "Paris", "days": 3}')
    out = [p.feed(text[: text.index("days")])]
    streamed = "".join(c.arguments_delta for d in out for c in d.calls)
    assert out[0].calls[0].name == "get_weather"
    assert streamed.startswith('{"location": "Paris"')


def test_partial_marker_released_at_finish() -> None:
    p = DeepSeekV3ToolParser()
    assert p.feed("x <｜tool▁calls▁beg").normal_text == "x "
    assert p.finish().normal_text == "<｜tool▁calls▁beg"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(V3_SAMPLES), st.lists(st.integers(0, 10_000), max_size=40))
def test_v3_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(DeepSeekV3ToolParser, text, split_at(text, cuts))
    check_stream(lambda: DeepSeekV3ToolParser(TOOLS), text, split_at(text, cuts))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(V31_SAMPLES), st.lists(st.integers(0, 10_000), max_size=40))
def test_v31_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(DeepSeekV31ToolParser, text, split_at(text, cuts))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["{", "}", '"', "a", ":", " ", "\n", "```json\n", CB, SEP, CE, B, E, "function"]),
        max_size=30,
    ).map("".join),
    st.lists(st.integers(0, 10_000), max_size=10),
)
def test_random_token_soup_never_raises(text: str, cuts: list[int]) -> None:
    check_stream(DeepSeekV3ToolParser, text, split_at(text, cuts))
    check_stream(DeepSeekV31ToolParser, text, split_at(text, cuts))


def test_raw_newline_in_json_string() -> None:
    text = B + v31_call("get_weather", '{"code": "a\nb"}') + E
    r = DeepSeekV31ToolParser().parse(text)
    assert json.loads(r.calls[0].arguments) == {"code": "a\nb"}


def test_control_char_in_key() -> None:
    r = DeepSeekV31ToolParser().parse(B + v31_call("f", '{"a\n": 1}') + E)
    assert len(r.calls) == 1
