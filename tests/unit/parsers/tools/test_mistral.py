"""mistral tool parser: [TOOL_CALLS] + JSON array, and the [TOOL_CALLS]name[ARGS]{...} form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import ToolParseResult, stream_chunks
from herder.parsers.tools.mistral import MistralToolParser

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {}}} for n in ("get_weather", "search", "f")
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
    r = MistralToolParser(TOOLS).parse(text)
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    r = stream_chunks(MistralToolParser(TOOLS), split(text, [size]))
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    assert MistralToolParser(TOOLS).parse(text) == ToolParseResult(text, [])
    assert stream_chunks(MistralToolParser(TOOLS), split(text, [1])) == ToolParseResult(text, [])


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
    deltas = [p.feed(c) for c in split(text, [3])] + [p.finish()]
    assert {c.index: c.name for d in deltas for c in d.calls if c.name} == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = MistralToolParser(TOOLS), MistralToolParser(TOOLS)
    a.feed('[TOOL_CALLS]f[ARGS]{"k": [1')
    assert b.feed("text").normal_text == "text"
    assert b.finish() == b.finish()
    assert a.finish().calls[0].arguments_delta == "1]}"  # the pending number completes at the end
    assert [c.index for c in a.feed(args_form("f", {})).calls] == [0]


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
plain_st = st.text(st.characters(blacklist_characters="[", blacklist_categories=("Cs",)), max_size=20)
call_st = st.tuples(names_st, args_st)
segments_st = st.lists(st.one_of(plain_st, call_st, st.lists(call_st, min_size=1, max_size=3)), max_size=5)
sizes_st = st.lists(st.integers(1, 16), min_size=1, max_size=8)


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
    one = MistralToolParser(TOOLS).parse(text)
    assert one.normal_text == normal
    assert calls_of(one) == calls
    assert_same(stream_chunks(MistralToolParser(TOOLS), split(text, sizes)), one)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    text = render(segments)[0]
    text = text[: cut % (len(text) + 1)]
    assert_same(
        stream_chunks(MistralToolParser(TOOLS), split(text, sizes)), MistralToolParser(TOOLS).parse(text)
    )


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
    one = MistralToolParser(TOOLS).parse(text)
    for c in one.calls:
        assert isinstance(json.loads(c.arguments), dict)
    assert_same(stream_chunks(MistralToolParser(TOOLS), split(text, sizes)), one)
