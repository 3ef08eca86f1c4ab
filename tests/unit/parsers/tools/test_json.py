"""json tool parser (bare JSON object / array of calls) and the partial_json scanner it builds on."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.base import stream_chunks
from herder.parsers.tools.json_parser import JsonToolParser
from herder.parsers.tools.partial_json import JsonScanner, find_json_end, parse_partial, repair_json
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
    named_indexes,
    names_st,
    plain_text,
    sizes_st,
    split_sizes,
    stream_deltas,
    tool_specs,
)

TOOLS = tool_specs("get_weather", "search", "f")
MAKE = partial(JsonToolParser, TOOLS)


def call(name: str, args: Any, key: str = "arguments") -> str:
    return json.dumps({"name": name, key: args}, ensure_ascii=False)


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (call("get_weather", {"city": "Zürich"}), "", [("get_weather", {"city": "Zürich"})]),
    (
        "Sure! "
        + call("search", {"q": 'a "quoted" \\ path', "opts": {"k": [1, {"x": None}]}}, "parameters")
        + " ok",
        "Sure!  ok",
        [("search", {"q": 'a "quoted" \\ path', "opts": {"k": [1, {"x": None}]}})],
    ),
    (
        "[" + call("f", {"a": 1}) + ",\n " + call("search", {"q": "日本"}) + "]",
        "",
        [("f", {"a": 1}), ("search", {"q": "日本"})],
    ),
    ('{"arguments": {"y": 2}, "name": "f"}', "", [("f", {"y": 2})]),
    ('{"name": "f"}', "", [("f", {})]),
    ('{"type": "function", "name": "f", "parameters": {"z": true}}', "", [("f", {"z": True})]),
    (
        'Use {braces} and [1, 2] in prose. {"name": "f", "arguments": {"v": 1.5e3}}',
        "Use {braces} and [1, 2] in prose. ",
        [("f", {"v": 1500.0})],
    ),
    ('{"name": "search", "arguments": {"q": "cut', "", [("search", {"q": "cut"})]),
    ('{"name": "search", "arguments": {"n": 12', "", [("search", {"n": 12})]),
]

MALFORMED = [
    "{",
    "[",
    "{}",
    "[]",
    '{"foo": "bar"}',
    '[{"foo": 1}]',
    "[1, 2, 3]",
    '{"name": 3}',
    "{'name': 'f'}",
    "text } ] with closers",
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


@pytest.mark.parametrize(
    ("text", "args", "rest"),
    [
        ('{"name": "f", "arguments": {"a": 1} oops', {"a": 1}, "oops"),
        ('{"name": "f", "arguments": {"a": tru}}', {}, "tru}}"),
        ('{"name": "f", "arguments": {"a": "x", "b": [1, }', {"a": "x", "b": [1]}, "}"),
    ],
)
def test_broken_after_name_keeps_call_and_returns_rest_as_text(text: str, args: dict, rest: str) -> None:
    # once the name has been streamed the call is committed: its arguments are closed at the last safe
    # point and the malformed remainder becomes normal text again
    r = JsonToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", args)]
    assert r.normal_text == rest
    for size in (1, 2, 5):
        assert_same(stream_chunks(JsonToolParser(TOOLS), split_sizes(text, [size])), r)


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = (
        "["
        + ", ".join([call("nope", {"a": 0}), call("f", {"a": 1}), call("zzz", {}), call("search", {"q": 2})])
        + "]"
    )
    r = JsonToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 1}), ("search", {"q": 2})]
    assert r.normal_text == ""
    p = JsonToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [5]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = JsonToolParser(TOOLS), JsonToolParser(TOOLS)
    assert a.feed('{"name": "f", "arguments": {"q": ').calls[0].name == "f"
    assert b.feed("hello ").normal_text == "hello "
    assert b.finish().calls == []
    assert calls_of(a.parse(call("search", {}))) == [("search", {})]  # parse() does not touch the stream
    rest = a.finish()
    assert rest.calls[0].arguments_delta == "}"  # '{"q": ' closed at its last safe point: '{' + '}'


# ----- partial_json ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ('{"a": [1, "x', {"a": [1, "x"]}),
        ('{"a": 12', {"a": 12}),
        ('{"a": 1, "b', {"a": 1}),
        ('{"a": "x\\', {"a": "x"}),
        ('{"a": "\\u00e9\\u00', {"a": "é"}),
        ('[{"k": {"z": [true, null', [{"k": {"z": [True, None]}}]),
        ("  {}", {}),
    ],
)
def test_parse_partial(prefix: str, expected: Any) -> None:
    assert parse_partial(prefix) == expected


def test_partial_json_invalid_and_ends() -> None:
    assert repair_json('{"a": tru') == "{}"
    assert repair_json("nope") is None
    with pytest.raises(ValueError):
        parse_partial("]")
    assert find_json_end('  {"a": "}"} tail') == 12
    assert find_json_end('{"a": 1') is None
    assert find_json_end("[1, 2}") is None


def test_scanner_members_and_incremental_feed() -> None:
    text = '{"name": "f", "arguments": {"x": "}{"}, "n": -1.5e-3}'
    sc = JsonScanner()
    for i in range(1, len(text) + 1):
        sc.feed(text[:i])
    assert sc.done and sc.end == len(text)
    assert [(k, text[s:e]) for k, s, e in sc.members] == [
        ("name", '"f"'),
        ("arguments", '{"x": "}{"}'),
        ("n", "-1.5e-3"),
    ]


@SETTINGS
@given(
    json_values_any := st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=5), ch, max_size=3),
        max_leaves=10,
    ),
    st.integers(0, 10**6),
    st.integers(0, 4),
)
def test_property_partial_json_prefixes(value: Any, cut: int, indent: int) -> None:
    text = json.dumps(value, indent=indent or None)
    prefix = text[: cut % (len(text) + 1)]
    fixed = repair_json(prefix)
    if fixed is not None:
        json.loads(fixed)  # always valid JSON
        sc = JsonScanner()
        sc.feed(prefix)
        if sc.safe > 0:
            assert text.startswith(prefix[sc.value_start : sc.safe])
    assert find_json_end(text) == len(text)


# ----- property tests -------------------------------------------------------------------------------
plain_st = plain_text("{[")
call_st = st.tuples(names_st, args_st, st.sampled_from(["arguments", "parameters"]))
segments_st = st.lists(st.one_of(plain_st, call_st, st.lists(call_st, min_size=1, max_size=3)), max_size=5)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        elif isinstance(seg, tuple):
            text.append(call(*seg))
            calls.append(seg[:2])
        else:
            text.append("[" + ", ".join(call(*c) for c in seg) + "]")
            calls.extend(c[:2] for c in seg)
    return "".join(text), "".join(normal), calls


@SETTINGS
@given(segments_st, sizes_st)
def test_property_roundtrip_and_chunking(segments: list, sizes: list[int]) -> None:
    text, normal, calls = render(segments)
    check_roundtrip(MAKE, text, normal, [tuple(c) for c in calls], sizes)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    check_truncated(MAKE, render(segments)[0], cut, sizes)


pieces_st = st.lists(
    st.sampled_from(
        [
            *("{", "}", "[", "]", '"name"', '"arguments"', '"parameters"', ":", ",", '"f"', '"zz"'),
            *("\\", '"', "\n", " ", "x", "1", "-", "1e", "true", "nul", '{"a": 1}', "é"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)


@pytest.mark.parametrize("size", [1, 3, 100])
def test_raw_control_characters_in_strings_are_escaped(size: int) -> None:
    # models emit raw newlines/tabs inside JSON strings (code); strict json.loads rejects them, so the
    # streamed arguments escape them (and a raw control character in a key must not raise)
    text = '{"name": "f", "arguments": {"code": "def f():\n\treturn 1\n", "k\x01": "\x00", "cut": "a\n'
    expected = {"code": "def f():\n\treturn 1\n", "k\x01": "\x00", "cut": "a\n"}
    r = JsonToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", expected)]
    assert "\n" not in r.calls[0].arguments
    assert_same(stream_chunks(JsonToolParser(TOOLS), split_sizes(text, [size])), r)
    assert parse_partial('{"a\n": "x\ty') == {"a\n": "x\ty"}
