"""sarashina tool parser: optional <|tool_calls|> + a Python-literal list of {name, arguments} dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import ToolParseResult, stream_chunks
from herder.parsers.tools.sarashina import SarashinaToolParser

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {}}} for n in ("get_weather", "search", "f")
]
MARK = "<|tool_calls|>"


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
    r = SarashinaToolParser(TOOLS).parse(text)
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    r = stream_chunks(SarashinaToolParser(TOOLS), split(text, [size]))
    assert r.normal_text == normal
    assert calls_of(r) == calls


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    assert SarashinaToolParser(TOOLS).parse(text) == ToolParseResult(text, [])
    assert stream_chunks(SarashinaToolParser(TOOLS), split(text, [1])) == ToolParseResult(text, [])


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = MARK + py_list([("nope", {}), ("f", {"a": 1}), ("zz", {"b": 2}), ("search", {"q": "x"})])
    r = SarashinaToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 1}), ("search", {"q": "x"})]
    p = SarashinaToolParser(TOOLS)
    deltas = [p.feed(c) for c in split(text, [3])] + [p.finish()]
    assert {c.index: c.name for d in deltas for c in d.calls if c.name} == {0: "f", 1: "search"}


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
leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
py_values = st.recursive(
    leaf,
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=5), ch, max_size=3),
    max_leaves=8,
)
call_st = st.tuples(
    st.sampled_from(["get_weather", "search", "f"]),
    st.dictionaries(st.text(max_size=6), py_values, max_size=4),
)
plain_st = st.text(st.characters(blacklist_characters="[<", blacklist_categories=("Cs",)), max_size=20)
segments_st = st.lists(
    st.one_of(plain_st, st.tuples(st.booleans(), st.lists(call_st, min_size=1, max_size=3))), max_size=4
)
sizes_st = st.lists(st.integers(1, 16), min_size=1, max_size=8)


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
    one = SarashinaToolParser(TOOLS).parse(text)
    assert one.normal_text == normal
    assert calls_of(one) == [(n, json.loads(json.dumps(a))) for n, a in calls]
    assert_same(stream_chunks(SarashinaToolParser(TOOLS), split(text, sizes)), one)


@SETTINGS
@given(segments_st, st.integers(0, 10**6), sizes_st)
def test_property_truncated_output(segments: list, cut: int, sizes: list[int]) -> None:
    text = render(segments)[0]
    text = text[: cut % (len(text) + 1)]
    assert_same(
        stream_chunks(SarashinaToolParser(TOOLS), split(text, sizes)), SarashinaToolParser(TOOLS).parse(text)
    )


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
    one = SarashinaToolParser(TOOLS).parse(text)
    for c in one.calls:
        assert isinstance(json.loads(c.arguments), dict)
    assert_same(stream_chunks(SarashinaToolParser(TOOLS), split(text, sizes)), one)
