"""qwen tool parser: <tool_call>{json}</tool_call> blocks, one-shot and streaming."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.base import aggregate_deltas, stream_chunks
from herder.parsers.tools.qwen import QwenToolParser
from tests.unit.parsers.tools.tool_test_support import (
    SETTINGS,
    args_st,
    assert_same,
    calls_of,
    check_fixed_chunks,
    check_fragments,
    check_malformed,
    check_one_shot,
    check_roundtrip,
    check_truncated,
    names_st,
    plain_text,
    sizes_st,
    split_sizes,
    stream_deltas,
    tool_specs,
)

TOOLS = tool_specs("get_weather", "search", "f", parameters={"type": "object"})
MAKE = partial(QwenToolParser, TOOLS)


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
    check_one_shot(MAKE, text, normal, calls)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 64])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    check_fixed_chunks(MAKE, text, normal, calls, size)


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    check_malformed(MAKE, text)


def test_stream_delta_shape() -> None:
    p = QwenToolParser(TOOLS)
    text = "A" + block("search", {"q": "x" * 40}) + block("f", {"k": 1})
    deltas = stream_deltas(p, split_sizes(text, [3]))
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
        deltas = stream_deltas(p, split_sizes(text, [size]))
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
plain_st = plain_text("<")
segments_st = st.lists(st.one_of(plain_st, st.tuples(names_st, args_st)), max_size=5)


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
    check_roundtrip(MAKE, text, normal, [(n, a) for n, a in calls], sizes)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    check_truncated(MAKE, render(segments)[0], cut, sizes)


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
    check_fragments(MAKE, text, sizes)


def test_raw_newlines_inside_json_strings() -> None:
    text = '<tool_call>\n{"name": "f", "arguments": {"code": "for i in x:\n    print(i)\n"}}\n</tool_call>'
    r = QwenToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"code": "for i in x:\n    print(i)\n"})]
    for size in (1, 2, 7):
        assert_same(stream_chunks(QwenToolParser(TOOLS), split_sizes(text, [size])), r)


def test_long_string_of_skipped_call_emits_nothing() -> None:
    # plain string content takes the engine's fast lane; a skipped (unknown) call must still emit nothing
    text = block("nope", {"s": "plain words " * 50}) + block("f", {"s": "more plain words " * 20})
    p = QwenToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [4]))
    assert {c.index for d in deltas for c in d.calls} == {0}
    r = aggregate_deltas(deltas)
    assert calls_of(r) == [("f", {"s": "more plain words " * 20})]
    assert r.normal_text == ""
