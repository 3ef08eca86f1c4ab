"""inkling tool parser: <|message_model|>NAME<|content_invoke_tool_json|>{json}<|end_message|>."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.inkling import InklingToolParser
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
MAKE = partial(InklingToolParser, TOOLS)
START, INVOKE, END = "<|message_model|>", "<|content_invoke_tool_json|>", "<|end_message|>"


def msg(name: str, args: Any) -> str:
    return START + name + INVOKE + json.dumps({"name": name, "args": args}, ensure_ascii=False) + END


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    ("Checking." + msg("get_weather", {"city": "Oslo"}), "Checking.", [("get_weather", {"city": "Oslo"})]),
    (
        msg("search", {"q": 'a\\b "c"'}) + "\n" + msg("f", {"deep": {"list": [1, 2, {"z": None}]}}) + "tail",
        "\ntail",
        [("search", {"q": 'a\\b "c"'}), ("f", {"deep": {"list": [1, 2, {"z": None}]}})],
    ),
    (START + "f" + INVOKE + '{"name": "f", "args": {"s": "trunc', "", [("f", {"s": "trunc"})]),
    (START + "f" + INVOKE + '{"args": {"k": 1}, "name": "f"}' + END, "", [("f", {"k": 1})]),
]

MALFORMED = [
    START + "model<|content_text|>hello" + END,
    START + "f" + INVOKE + "not json" + END,
    START + "f" + INVOKE + '{"args": {}}' + END,
    START,
    "<|message_mod",
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
    text = msg("nope", {"a": 1}) + msg("f", {}) + "x" + msg("other", {}) + msg("search", {"q": 1})
    r = InklingToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {}), ("search", {"q": 1})]
    assert r.normal_text == "x"
    p = InklingToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [3]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = InklingToolParser(TOOLS), InklingToolParser(TOOLS)
    a.feed(START + "f" + INVOKE + '{"name": "f", "args": {"k": "v')
    assert b.parse("plain").normal_text == "plain"
    assert a.finish().calls[0].arguments_delta == '"}'


plain_st = plain_text("<")
segments_st = st.lists(st.one_of(plain_st, st.tuples(names_st, args_st)), max_size=5)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        else:
            text.append(msg(*seg))
            calls.append(seg)
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
            *(START, INVOKE, END, "<|message", "<|content", "f", "search", "{", "}", '"name"', '"args"', ":"),
            *(",", '"f"', '"', " ", "x", "1", '{"a": 1}', "é", "\\", "<"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
