"""mistral tool parser: [TOOL_CALLS] + JSON array, and the [TOOL_CALLS]name[ARGS]{...} form."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.mistral import MistralToolParser
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
MAKE = partial(MistralToolParser, TOOLS)


def array_form(calls: list[tuple[str, Any]]) -> str:
    body = ", ".join(json.dumps({"name": n, "arguments": a}, ensure_ascii=False) for n, a in calls)
    return "[TOOL_CALLS] [" + body + "]"


def args_form(name: str, args: Any) -> str:
    return "[TOOL_CALLS]" + name + "[ARGS]" + json.dumps(args, ensure_ascii=False)


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        "Let me look. " + array_form([("get_weather", {"city": "Lyon"}), ("search", {"q": 'x "y"'})]),
        "Let me look. ",
        [("get_weather", {"city": "Lyon"}), ("search", {"q": 'x "y"'})],
    ),
    ('[TOOL_CALLS] {"name": "f", "arguments": {"n": [1, 2]}}', "", [("f", {"n": [1, 2]})]),
    (
        args_form("get_weather", {"city": "Kraków", "days": 3}) + args_form("f", {}) + "\nThat's it.",
        "\nThat's it.",
        [("get_weather", {"city": "Kraków", "days": 3}), ("f", {})],
    ),
    (
        '[TOOL_CALLS]search[CALL_ID]a1B2c3[ARGS]{"q": "deep {nested} \\\\"}',
        "",
        [("search", {"q": "deep {nested} \\"})],
    ),
    ('[TOOL_CALLS]search[ARGS]{"q": "unterminated', "", [("search", {"q": "unterminated"})]),
]

MALFORMED = [
    "[TOOL_CALLS]",
    "[TOOL_CALLS] hello there",
    "[TOOL_CALLS] [1, 2]",
    '[TOOL_CALLS] [{"foo": 1}]',
    "[TOOL_CALLS]name[OTHER]{}",
    "[TOOL_CALLS]name",
    "[TOOL_CA",
    "Arrays like [1, 2] are just text.",
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


def test_args_form_streams_arguments_incrementally() -> None:
    p = MistralToolParser(TOOLS)
    d = p.feed("[TOOL_CALLS]sea")
    assert d.calls == []
    d = p.feed('rch[ARGS]{"q": "abc')
    assert d.calls[0].name == "search"
    assert d.calls[0].arguments_delta == '{"q": "abc'
    d = p.feed('def"}')
    assert d.calls[0].arguments_delta == 'def"}'
    assert p.finish().calls == []


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = (
        array_form([("nope", {"a": 0}), ("f", {"a": 1})])
        + args_form("other", {"b": 1})
        + args_form("search", {"q": 2})
    )
    r = MistralToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 1}), ("search", {"q": 2})]
    assert r.normal_text == ""
    p = MistralToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [3]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = MistralToolParser(TOOLS), MistralToolParser(TOOLS)
    a.feed('[TOOL_CALLS]f[ARGS]{"k": [1')
    assert b.feed("text").normal_text == "text"
    assert b.finish() == b.finish()
    assert a.finish().calls[0].arguments_delta == "1]}"  # the pending number completes at the end
    assert [c.index for c in a.feed(args_form("f", {})).calls] == [0]


plain_st = plain_text("[")
call_st = st.tuples(names_st, args_st)
segments_st = st.lists(st.one_of(plain_st, call_st, st.lists(call_st, min_size=1, max_size=3)), max_size=5)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        elif isinstance(seg, tuple):
            text.append(args_form(*seg))
            calls.append(seg)
        else:
            text.append(array_form(seg))
            calls.extend(seg)
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
            *("[TOOL_CALLS]", "[TOOL_", "[ARGS]", "[CALL_ID]", "[AR", "f", "search", "{", "}", "[", "]"),
            *('"name"', '"arguments"', ":", ",", '"f"', '"', " ", "x", "1", '{"a": 1}', "é", "\\"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
