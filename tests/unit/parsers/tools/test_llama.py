"""llama tool parser: <|python_tag|> + {"name", "parameters"} JSON (also plain JSON; ';'-separated)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import ToolParseResult, stream_chunks
from herder.parsers.tools.llama import LlamaToolParser

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {}}} for n in ("get_weather", "search", "f")
]
TAG = "<|python_tag|>"


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
    r = LlamaToolParser(TOOLS).parse(text)
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    r = stream_chunks(LlamaToolParser(TOOLS), split(text, [size]))
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    assert LlamaToolParser(TOOLS).parse(text) == ToolParseResult(text, [])
    assert stream_chunks(LlamaToolParser(TOOLS), split(text, [1])) == ToolParseResult(text, [])


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
    deltas = [p.feed(c) for c in split(text, [2])] + [p.finish()]
    assert {c.index: c.name for d in deltas for c in d.calls if c.name} == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = LlamaToolParser(TOOLS), LlamaToolParser(TOOLS)
    a.feed(TAG + '{"name": "f", "parameters": {"s": "ab')
    assert b.feed("hi").normal_text == "hi"
    assert a.finish().calls[0].arguments_delta == '"}'
    assert LlamaToolParser(TOOLS).parse("x").normal_text == "x"


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
plain_st = st.text(st.characters(blacklist_characters="{<;", blacklist_categories=("Cs",)), max_size=20)
segments_st = st.lists(
    st.one_of(
        plain_st, st.tuples(st.booleans(), st.lists(st.tuples(names_st, args_st), min_size=1, max_size=3))
    ),
    max_size=5,
)
sizes_st = st.lists(st.integers(1, 16), min_size=1, max_size=8)


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
    one = LlamaToolParser(TOOLS).parse(text)
    assert one.normal_text == normal
    assert calls_of(one) == calls
    assert_same(stream_chunks(LlamaToolParser(TOOLS), split(text, sizes)), one)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    text = render(segments)[0]
    text = text[: cut % (len(text) + 1)]
    assert_same(stream_chunks(LlamaToolParser(TOOLS), split(text, sizes)), LlamaToolParser(TOOLS).parse(text))


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
    one = LlamaToolParser(TOOLS).parse(text)
    for c in one.calls:
        assert isinstance(json.loads(c.arguments), dict)
    assert_same(stream_chunks(LlamaToolParser(TOOLS), split(text, sizes)), one)
