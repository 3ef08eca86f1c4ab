"""sarashina tool parser: optional <|tool_calls|> + a Python-literal list of {name, arguments} dicts."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.sarashina import SarashinaToolParser
from tests.unit.parsers.tools.tool_test_support import (
    SETTINGS,
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
    py_values,
    sizes_st,
    split_sizes,
    stream_deltas,
    tool_specs,
)

TOOLS = tool_specs("get_weather", "search", "f")
MAKE = partial(SarashinaToolParser, TOOLS)
MARK = "<|tool_calls|>"


def py_list(calls: list[tuple[str, dict]]) -> str:
    return repr([{"name": n, "arguments": a} for n, a in calls])


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        "天気を調べます。" + MARK + "[{'name': 'get_weather', 'arguments': {'city': '東京', 'unit': None}}]",
        "天気を調べます。",
        [("get_weather", {"city": "東京", "unit": None})],
    ),
    (
        MARK + '[{"name": "search", "arguments": {"q": "a\\"b", "n": True}}, {"name": "f", "arguments": {}}]',
        "",
        [("search", {"q": 'a"b', "n": True}), ("f", {})],
    ),
    ("[{'name': 'f', 'arguments': {'x': (1, 2)}}] done", " done", [("f", {"x": [1, 2]})]),
    ('[{"name": "f", "arguments": {"ok": true, "v": null}}]', "", [("f", {"ok": True, "v": None})]),
    ("[{'name': 'f', 'arguments': '{\"k\": 1}'}]", "", [("f", {"k": 1})]),
    ("[{'name': 'f'}]", "", [("f", {})]),
]

MALFORMED = [
    MARK + "nothing",
    "[1, 2]",
    "[{'name': 3}]",
    "[{'arguments': {}}]",
    "[{'name': 'f', 'arguments': [1]}]",
    "[{'name': 'f', 'arguments': {'a': x}}]",
    MARK,
    "[{'name': 'f'",
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
    text = MARK + py_list([("nope", {}), ("f", {"a": 1}), ("zz", {"b": 2}), ("search", {"q": "x"})])
    r = SarashinaToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 1}), ("search", {"q": "x"})]
    p = SarashinaToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [3]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = SarashinaToolParser(TOOLS), SarashinaToolParser(TOOLS)
    a.feed(MARK + "[{'name': 'f', 'arguments': {'a': 1}}, {'name'")
    assert b.parse("hello").normal_text == "hello"
    assert b.parse("[{'name': 'f'}]").calls[0].name == "f"
    assert a.finish().normal_text == "{'name'"


def test_has_tool_markers() -> None:
    assert SarashinaToolParser().has_tool_markers("x" + MARK)
    assert not SarashinaToolParser().has_tool_markers("plain [1]")


# ----- property tests -------------------------------------------------------------------------------
call_st = st.tuples(
    names_st,
    st.dictionaries(st.text(max_size=6), py_values, max_size=4),
)
plain_st = plain_text("[<")
segments_st = st.lists(
    st.one_of(plain_st, st.tuples(st.booleans(), st.lists(call_st, min_size=1, max_size=3))), max_size=4
)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        else:
            marked, group = seg
            text.append((MARK if marked else "") + py_list(group))
            calls.extend(group)
    return "".join(text), "".join(normal), calls


@SETTINGS
@given(segments_st, sizes_st)
def test_property_roundtrip_and_chunking(segments: list, sizes: list[int]) -> None:
    text, normal, calls = render(segments)
    check_roundtrip(MAKE, text, normal, [(n, json.loads(json.dumps(a))) for n, a in calls], sizes)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    check_truncated(MAKE, render(segments)[0], cut, sizes)


pieces_st = st.lists(
    st.sampled_from(
        [
            *(MARK, "<|tool", "[", "]", "{", "}", "'name'", "'arguments'", '"name"', ":", ",", "'f'", "'"),
            *('"', " ", "1", "None", "true", "(", ")", "\\", "\n", "é", "'''"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
