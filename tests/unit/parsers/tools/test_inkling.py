"""inkling tool parser: <|message_model|>NAME<|content_invoke_tool_json|>{json}<|end_message|>."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import ToolParseResult, stream_chunks
from herder.parsers.tools.inkling import InklingToolParser

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {}}} for n in ("get_weather", "search", "f")
]
START, INVOKE, END = "<|message_model|>", "<|content_invoke_tool_json|>", "<|end_message|>"


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
    r = InklingToolParser(TOOLS).parse(text)
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    r = stream_chunks(InklingToolParser(TOOLS), split(text, [size]))
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    assert InklingToolParser(TOOLS).parse(text) == ToolParseResult(text, [])
    assert stream_chunks(InklingToolParser(TOOLS), split(text, [1])) == ToolParseResult(text, [])


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = msg("nope", {"a": 1}) + msg("f", {}) + "x" + msg("other", {}) + msg("search", {"q": 1})
    r = InklingToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {}), ("search", {"q": 1})]
    assert r.normal_text == "x"
    p = InklingToolParser(TOOLS)
    deltas = [p.feed(c) for c in split(text, [3])] + [p.finish()]
    assert {c.index: c.name for d in deltas for c in d.calls if c.name} == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = InklingToolParser(TOOLS), InklingToolParser(TOOLS)
    a.feed(START + "f" + INVOKE + '{"name": "f", "args": {"k": "v')
    assert b.parse("plain").normal_text == "plain"
    assert a.finish().calls[0].arguments_delta == '"}'


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
            text.append(msg(*seg))
            calls.append(seg)
    return "".join(text), "".join(normal), calls


@SETTINGS
@given(segments_st, sizes_st)
def test_property_roundtrip_and_chunking(segments: list, sizes: list[int]) -> None:
    text, normal, calls = render(segments)
    one = InklingToolParser(TOOLS).parse(text)
    assert one.normal_text == normal
    assert calls_of(one) == calls
    assert_same(stream_chunks(InklingToolParser(TOOLS), split(text, sizes)), one)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    text = render(segments)[0]
    text = text[: cut % (len(text) + 1)]
    assert_same(
        stream_chunks(InklingToolParser(TOOLS), split(text, sizes)), InklingToolParser(TOOLS).parse(text)
    )


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
    one = InklingToolParser(TOOLS).parse(text)
    for c in one.calls:
        assert isinstance(json.loads(c.arguments), dict)
    assert_same(stream_chunks(InklingToolParser(TOOLS), split(text, sizes)), one)
