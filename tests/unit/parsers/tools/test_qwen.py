"""qwen tool parser: <tool_call>{json}</tool_call> blocks, one-shot and streaming."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import ToolParseResult, aggregate_deltas, stream_chunks
from herder.parsers.tools.qwen import QwenToolParser

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("get_weather", "search", "f")
]


def split(text: str, sizes: list[int]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        step = sizes[k % len(sizes)] if sizes else 1
        out.append(text[i : i + step])
        i += step
        k += 1
    return out


def calls_of(r: ToolParseResult) -> list[tuple[str, Any]]:
    return [(c.name, json.loads(c.arguments)) for c in r.calls]


def assert_same(a: ToolParseResult, b: ToolParseResult) -> None:
    assert a.normal_text == b.normal_text
    assert calls_of(a) == calls_of(b)


def block(name: str, args: Any) -> str:
    return (
        "<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "\n</tool_call>"
    )


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        "I'll check the weather.\n" + block("get_weather", {"city": "Paris", "unit": "celsius"}),
        "I'll check the weather.\n",
        [("get_weather", {"city": "Paris", "unit": "celsius"})],
    ),
    (
        block("search", {"q": 'say "hi" \\ bye', "n": [1, 2.5, {"deep": [None, True]}]})
        + "\n"
        + block("f", {})
        + "\nDone.",
        "\n\nDone.",
        [("search", {"q": 'say "hi" \\ bye', "n": [1, 2.5, {"deep": [None, True]}]}), ("f", {})],
    ),
    (
        '<tool_call>\n{"name": "f", "arguments": {"text": "東京 ✓ </tool_call> inside"}}\n</tool_call>',
        "",
        [("f", {"text": "東京 ✓ </tool_call> inside"})],
    ),
    (  # keys in the other order, "parameters" accepted
        '<tool_call>{"parameters": {"a": 1}, "name": "f"}</tool_call>',
        "",
        [("f", {"a": 1})],
    ),
    (  # arguments given as a JSON string
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>',
        "",
        [("f", {"a": 1})],
    ),
    (  # truncated output: the call is kept, its arguments closed
        'Hi <tool_call>\n{"name": "search", "arguments": {"q": "rust async", "filters": ["a", "b',
        "Hi ",
        [("search", {"q": "rust async", "filters": ["a", "b"]})],
    ),
    (  # missing end tag
        '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\nafter',
        "\nafter",
        [("f", {"x": 1})],
    ),
]

MALFORMED = [
    "<tool_call>not json</tool_call>",
    "<tool_call>\n[1, 2]\n</tool_call>",
    '<tool_call>{"foo": 1}</tool_call>',
    '<tool_call>{"name": 5, "arguments": {}}</tool_call>',
    '<tool_call>{"arguments": {"a": 1}}</tool_call>',
    "<tool_call>",
    "<tool_c",
    "plain text with < and > and {braces}",
]


@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_one_shot(text: str, normal: str, calls: list) -> None:
    r = QwenToolParser(TOOLS).parse(text)
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 64])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    r = stream_chunks(QwenToolParser(TOOLS), split(text, [size]))
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    assert QwenToolParser(TOOLS).parse(text) == ToolParseResult(text, [])
    r = stream_chunks(QwenToolParser(TOOLS), split(text, [1]))
    assert r == ToolParseResult(text, [])


def test_stream_delta_shape() -> None:
    p = QwenToolParser(TOOLS)
    text = "A" + block("search", {"q": "x" * 40}) + block("f", {"k": 1})
    deltas = [p.feed(c) for c in split(text, [3])] + [p.finish()]
    seen: dict[int, str] = {}
    for d in deltas:
        for c in d.calls:
            if c.name is not None:
                assert c.index not in seen  # the name comes once, first
                seen[c.index] = c.name
            else:
                assert c.index in seen
    assert seen == {0: "search", 1: "f"}
    # the long string value is streamed in several pieces, not in one block at the end
    assert sum(1 for d in deltas for c in d.calls if c.index == 0 and c.arguments_delta) > 5


def test_name_only_emitted_when_complete() -> None:
    p = QwenToolParser(TOOLS)
    d = p.feed('<tool_call>{"name": "get_wea')
    assert d.calls == [] and d.normal_text == ""
    d = p.feed('ther", "arguments": {"city": "Par')
    assert d.calls[0].name == "get_weather" and d.calls[0].index == 0
    assert d.calls[0].arguments_delta.startswith("{")


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = block("search", {"q": 1}) + "x" + block("nope", {"z": 2}) + "y" + block("f", {"k": 3})
    expected = [("search", {"q": 1}), ("f", {"k": 3})]
    r = QwenToolParser(TOOLS).parse(text)
    assert calls_of(r) == expected
    assert r.normal_text == "xy"  # the unknown call's text is dropped
    for size in (1, 4, 9):
        p = QwenToolParser(TOOLS)
        deltas = [p.feed(c) for c in split(text, [size])] + [p.finish()]
        indexes = sorted({c.index for d in deltas for c in d.calls})
        assert indexes == [0, 1]
    # without a tools list every name is accepted
    assert [c.name for c in QwenToolParser().parse(text).calls] == ["search", "nope", "f"]


def test_state_does_not_leak_between_instances() -> None:
    a, b = QwenToolParser(TOOLS), QwenToolParser(TOOLS)
    a.feed('<tool_call>{"name": "search", "arguments": {"q": "abc')
    assert b.feed("plain").normal_text == "plain"
    assert calls_of(b.parse(block("f", {}))) == [("f", {})]
    r = a.finish()
    assert r.calls[0].arguments_delta.endswith('"}')
    # after finish the instance starts clean (indexes restart at 0)
    d = a.feed(block("f", {"n": 1}))
    assert [c.index for c in d.calls] == [0]
    a.reset()
    assert a.finish().normal_text == ""


def test_has_tool_markers() -> None:
    p = QwenToolParser()
    assert p.has_tool_markers("x <tool_call>{")
    assert not p.has_tool_markers("no markers {here}")


# ----- property tests ---------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=3),
    max_leaves=8,
)
args_st = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
names_st = st.sampled_from(["get_weather", "search", "f"])
plain_st = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=20)
segments_st = st.lists(st.one_of(plain_st, st.tuples(names_st, args_st)), max_size=5)
sizes_st = st.lists(st.integers(1, 16), min_size=1, max_size=8)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        else:
            text.append(block(*seg))
            calls.append(seg)
    return "".join(text), "".join(normal), calls


@SETTINGS
@given(segments_st, sizes_st)
def test_property_roundtrip_and_chunking(segments: list, sizes: list[int]) -> None:
    text, normal, calls = render(segments)
    one = QwenToolParser(TOOLS).parse(text)
    assert one.normal_text == normal
    assert calls_of(one) == [(n, a) for n, a in calls]
    assert_same(stream_chunks(QwenToolParser(TOOLS), split(text, sizes)), one)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    text = render(segments)[0]
    text = text[: cut % (len(text) + 1)]
    one = QwenToolParser(TOOLS).parse(text)
    assert_same(stream_chunks(QwenToolParser(TOOLS), split(text, sizes)), one)


pieces_st = st.lists(
    st.sampled_from(
        [
            *("<tool_call>", "</tool_call>", "<tool_", "{", "}", "[", "]", '"name"', '"arguments"', ":", ","),
            *('"f"', '"search"', "\\", '"', "\n", " ", "x", "1", "null", '{"a": 1}', "é"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    one = QwenToolParser(TOOLS).parse(text)
    for c in one.calls:
        assert isinstance(json.loads(c.arguments), dict)
    assert_same(stream_chunks(QwenToolParser(TOOLS), split(text, sizes)), one)


def test_raw_newlines_inside_json_strings() -> None:
    text = '<tool_call>\n{"name": "f", "arguments": {"code": "for i in x:\n    print(i)\n"}}\n</tool_call>'
    r = QwenToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"code": "for i in x:\n    print(i)\n"})]
    for size in (1, 2, 7):
        assert_same(stream_chunks(QwenToolParser(TOOLS), split(text, [size])), r)


def test_long_string_of_skipped_call_emits_nothing() -> None:
    # plain string content takes the engine's fast lane; a skipped (unknown) call must still emit nothing
    text = block("nope", {"s": "plain words " * 50}) + block("f", {"s": "more plain words " * 20})
    p = QwenToolParser(TOOLS)
    deltas = [p.feed(c) for c in split(text, [4])] + [p.finish()]
    assert {c.index for d in deltas for c in d.calls} == {0}
    r = aggregate_deltas(deltas)
    assert calls_of(r) == [("f", {"s": "more plain words " * 20})]
    assert r.normal_text == ""
