"""pythonic tool parser: [f(a=1, b="x"), g()] with Python literals (parsed with ast, never evaluated)."""

from __future__ import annotations

import json
import keyword
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.pythonic import PyBracketScanner, PythonicToolParser
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
MAKE = partial(PythonicToolParser, TOOLS)


def py_call(name: str, args: dict) -> str:
    return name + "(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"


def py_list(calls: list[tuple[str, dict]]) -> str:
    return "[" + ", ".join(py_call(n, a) for n, a in calls) + "]"


CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        '[get_weather(city="San Francisco", metric=True, days=3), search(query="a (b) [c]")]',
        "",
        [
            ("get_weather", {"city": "San Francisco", "metric": True, "days": 3}),
            ("search", {"query": "a (b) [c]"}),
        ],
    ),
    (
        "Sure! [f(x=None, y=(1, 2), z={'k': [1.5, -2]}, s='it\\'s \"ok\"')] Anything else?",
        "Sure!  Anything else?",
        [("f", {"x": None, "y": [1, 2], "z": {"k": [1.5, -2]}, "s": 'it\'s "ok"'})],
    ),
    ("[f()]", "", [("f", {})]),
    (
        '<|python_start|>[search(q="""multi\nline ) ]""")]<|python_end|> done',
        " done",
        [("search", {"q": "multi\nline ) ]"})],
    ),
    ("[f(a='é✓日本')]", "", [("f", {"a": "é✓日本"})]),
    ("See [1] or [x] first. [f(n=1)]", "See [1] or [x] first. ", [("f", {"n": 1})]),
    ("[f(a=1), g(b=os.system('x'))] rest", "g(b=os.system('x'))] rest", [("f", {"a": 1})]),
]

MALFORMED = [
    "[f(a=x)]",
    "[f(1, 2)]",
    "[f(**kw)]",
    "[f(a=1]",
    "[f(a='unterminated)]",
    "[__import__('os').system('ls')]",
    "[]",
    "[",
    "[f",
]


@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_one_shot(text: str, normal: str, calls: list) -> None:
    check_one_shot(PythonicToolParser, text, normal, calls)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(("text", "normal", "calls"), CASES)
def test_streaming_fixed_chunks(text: str, normal: str, calls: list, size: int) -> None:
    check_fixed_chunks(PythonicToolParser, text, normal, calls, size)


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_normal_text(text: str) -> None:
    check_malformed(MAKE, text)


def test_calls_are_emitted_one_by_one() -> None:
    p = PythonicToolParser(TOOLS)
    d = p.feed('[get_weather(city="Rome"), sea')
    assert [(c.index, c.name, json.loads(c.arguments_delta)) for c in d.calls] == [
        (0, "get_weather", {"city": "Rome"})
    ]
    d = p.feed('rch(q="x")]')
    assert [(c.index, c.name) for c in d.calls] == [(1, "search")]


def test_bracket_scanner_split_triple_quote() -> None:
    text = 'f(a="""x""", b=")")'
    sc = PyBracketScanner(1)
    ends = [sc.feed(text[:i], False) for i in range(2, len(text) + 1)]
    assert ends[-1] == len(text)
    assert all(e < 0 for e in ends[:-1])


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = "[nope(a=1), f(a=2), other(), search(q='s')]"
    r = PythonicToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("f", {"a": 2}), ("search", {"q": "s"})]
    p = PythonicToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [2]))
    assert named_indexes(deltas) == {0: "f", 1: "search"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = PythonicToolParser(TOOLS), PythonicToolParser(TOOLS)
    assert a.feed("[f(a=1), search(q='x").calls[0].name == "f"
    assert b.parse("[search(q='y')]").calls[0].arguments == '{"q": "y"}'
    rest = a.finish()
    assert rest.calls == []  # an incomplete call is never emitted
    assert rest.normal_text == "search(q='x"  # ... its text ends the region and is returned as text


# ----- property tests -------------------------------------------------------------------------------
ident = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
call_st = st.tuples(names_st, st.dictionaries(ident, py_values, max_size=4))
plain_st = plain_text("[<")
segments_st = st.lists(st.one_of(plain_st, st.lists(call_st, min_size=1, max_size=3)), max_size=4)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        else:
            text.append(py_list(seg))
            calls.extend(seg)
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
            *("[", "]", "(", ")", "f", "search", "a=", "=", ",", " ", "'", '"', '"""', "'''", "\\", "1"),
            *("None", "True", "x", "{", "}", ":", "<|python_start|>", "<|python_end|>", "#", "\n", "é"),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
