"""cohere tool parser: <|START_ACTION|>...<|END_ACTION|> calls and <|START_RESPONSE|> text blocks."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.cohere import CohereToolParser
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
MAKE = partial(CohereToolParser, TOOLS)
SA, EA, SR, ER = "<|START_ACTION|>", "<|END_ACTION|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>"


def action(calls: list[tuple[str, Any]], as_array: bool = True) -> str:
    items = [
        json.dumps({"tool_call_id": str(i), "tool_name": n, "parameters": a}, ensure_ascii=False)
        for i, (n, a) in enumerate(calls)
    ]
    body = "[\n    " + ",\n    ".join(items) + "\n]" if as_array else items[0]
    return SA + body + EA


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        action([("get_weather", {"location": "Toronto"}), ("search", {"query": 'CN tower "height"'})]),
        "",
        [("get_weather", {"location": "Toronto"}), ("search", {"query": 'CN tower "height"'})],
    ),
    (SR + "The answer is 42." + ER, "The answer is 42.", []),
    (
        "<|START_THINKING|>plan<|END_THINKING|>" + action([("f", {"x": [1, {"y": "ß"}]})], as_array=False),
        "<|START_THINKING|>plan<|END_THINKING|>",
        [("f", {"x": [1, {"y": "ß"}]})],
    ),
    ('{"tool_name": "f"}', '{"tool_name": "f"}', []),  # no action marker: plain text
    (SA + '{"tool_name": "f", "parameters": {"a": 1}}', "", [("f", {"a": 1})]),  # missing end marker
    (SR + "unterminated response", "unterminated response", []),
]

MALFORMED = [SA + "oops" + EA, SA + "[]" + EA, SA + '{"foo": 1}' + EA, "<|START_ACT", SA]


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


def test_response_text_streams_without_waiting_for_the_end_marker() -> None:
    p = CohereToolParser(TOOLS)
    assert p.feed(SR + "Hello wor").normal_text == "Hello wor"
    assert p.feed("ld<|END_RES").normal_text == "ld"  # the partial end marker is held back
    assert p.feed("PONSE|>").normal_text == ""
    assert p.finish().normal_text == ""


def test_has_tool_markers() -> None:
    assert CohereToolParser().has_tool_markers("x" + SA)
    assert not CohereToolParser().has_tool_markers(SR + "x" + ER)


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = (
        action([("zz", {}), ("f", {"a": 1})]) + SR + "mid" + ER + action([("yy", {"b": 1}), ("search", {})])
    )
    r = CohereToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 1}), ("search", {})]
    assert r.normal_text == "mid"
    p = CohereToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [4]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = CohereToolParser(TOOLS), CohereToolParser(TOOLS)
    a.feed(SR + "partial <|END_")
    assert b.parse("<|END_RESPONSE|>").normal_text == "<|END_RESPONSE|>"
    assert a.finish().normal_text == "<|END_"


plain_st = plain_text("<")
segments_st = st.lists(
    st.one_of(
        plain_st,
        st.tuples(st.just("response"), plain_st),
        st.tuples(st.booleans(), st.lists(st.tuples(names_st, args_st), min_size=1, max_size=3)),
    ),
    max_size=5,
)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        elif seg[0] == "response":
            text.append(SR + seg[1] + ER)
            normal.append(seg[1])
        else:
            as_array, group = seg
            group = group if as_array else group[:1]
            text.append(action(group, as_array))
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
            *(SA, EA, SR, ER, "<|START_", "<|END_", "{", "}", "[", "]", '"tool_name"', '"parameters"', ":"),
            *(",", '"f"', '"', " ", "x", "1", '{"a": 1}', "é", "\\"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
