"""llama tool parser: <|python_tag|> + {"name", "parameters"} JSON (also plain JSON; ';'-separated)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.llama import LlamaToolParser
from tests.unit.parsers.tools.tool_test_support import (
    SETTINGS,
    args_st,
    calls_of,
    check_fixed_chunks,
    check_fragments,
    check_malformed,
    check_one_shot,
    check_roundtrip,
    check_truncated,
    named_indexes,
    names_st,
    plain_text,
    sizes_st,
    split_sizes,
    stream_deltas,
    tool_specs,
)

TOOLS = tool_specs("get_weather", "search", "f")
MAKE = partial(LlamaToolParser, TOOLS)
TAG = "<|python_tag|>"


def obj(name: str, args: Any) -> str:
    return json.dumps({"name": name, "parameters": args}, ensure_ascii=False)


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        TAG + obj("get_weather", {"location": "San Francisco, CA"}),
        "",
        [("get_weather", {"location": "San Francisco, CA"})],
    ),
    (
        TAG + obj("search", {"q": "ünïcode"}) + "; " + obj("f", {"n": {"deep": [1, None]}}),
        "",
        [("search", {"q": "ünïcode"}), ("f", {"n": {"deep": [1, None]}})],
    ),
    (
        "Thinking... " + obj("f", {"a": "{not a marker}"}) + " done",
        "Thinking...  done",
        [("f", {"a": "{not a marker}"})],
    ),
    ('{"name": "f", "arguments": {"x": 1}}', "", [("f", {"x": 1})]),
    (TAG + '{"name": "search", "parameters": {"q": "cut here', "", [("search", {"q": "cut here"})]),
    (obj("f", {}) + ";", ";", [("f", {})]),
]

MALFORMED = [
    TAG + "print('hello')",
    TAG,
    "Use {curly} braces",
    '{"parameters": {"a": 1}}',
    '{"city": "Paris"}',
    "<|python_ta",
]


@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_one_shot(text: str, normal: str, calls: list) -> None:
    check_one_shot(MAKE, text, normal, calls)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    check_fixed_chunks(MAKE, text, normal, calls, size)


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    check_malformed(MAKE, text)


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = (
        TAG
        + obj("x1", {})
        + "; "
        + obj("f", {"a": 1})
        + "; "
        + obj("x2", {"b": 2})
        + "; "
        + obj("search", {})
    )
    r = LlamaToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 1}), ("search", {})]
    p = LlamaToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [2]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = LlamaToolParser(TOOLS), LlamaToolParser(TOOLS)
    a.feed(TAG + '{"name": "f", "parameters": {"s": "ab')
    assert b.feed("hi").normal_text == "hi"
    assert a.finish().calls[0].arguments_delta == '"}'
    assert LlamaToolParser(TOOLS).parse("x").normal_text == "x"


plain_st = plain_text("{<;")
segments_st = st.lists(
    st.one_of(
        plain_st, st.tuples(st.booleans(), st.lists(st.tuples(names_st, args_st), min_size=1, max_size=3))
    ),
    max_size=5,
)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        else:
            tagged, group = seg
            text.append((TAG if tagged else "") + "; ".join(obj(*c) for c in group))
            calls.extend(group)
    return "".join(text), "".join(normal), calls


@SETTINGS
@given(segments_st, sizes_st)
def test_property_roundtrip_and_chunking(segments: list, sizes: list[int]) -> None:
    text, normal, calls = render(segments)
    check_roundtrip(MAKE, text, normal, calls, sizes)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    check_truncated(MAKE, render(segments)[0], cut, sizes)


pieces_st = st.lists(
    st.sampled_from(
        [
            *(TAG, "<|python", "{", "}", "[", "]", ";", '"name"', '"parameters"', ":", ",", '"f"', '"'),
            *(" ", "x", "1", '{"a": 1}', "é", "\\", "\n"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
