"""qwen_xml (qwen_coder) tool parser: <function=NAME><parameter=KEY>value</parameter> with schema coercion."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.parsers.tools.qwen_xml import QwenXmlToolParser
from herder.parsers.tools.registry import get_tool_parser
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
    plain_text,
    sizes_st,
    split_sizes,
    stream_deltas,
)

RUN_SCHEMA = {
    "type": "object",
    "properties": {
        "s": {"type": "string"},
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "b": {"type": "boolean"},
        "o": {"type": "object"},
        "a": {"type": "array"},
        "maybe": {"type": ["integer", "null"]},
    },
}
TOOLS = [
    {"type": "function", "function": {"name": "run", "parameters": RUN_SCHEMA}},
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}},
]
MAKE = partial(QwenXmlToolParser, TOOLS)


def text_of(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)


def call(name: str, args: dict) -> str:
    params = "".join(f"<parameter={k}>\n{text_of(v)}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


CODE = 'def f(a, b):\n    if a < b and b > 0:\n        return "&amp; <tag>"\n'

CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    (
        "I will run it.\n"
        + call("run", {"s": CODE, "n": 42, "x": 2.5, "b": True, "o": {"k": [1]}, "a": [1, "z"]}),
        "I will run it.\n",
        [("run", {"s": CODE, "n": 42, "x": 2.5, "b": True, "o": {"k": [1]}, "a": [1, "z"]})],
    ),
    (  # values are literal: no HTML unescaping; unknown params stay strings
        call("f", {"html": "&lt;b&gt; &amp;", "num": "12"}),
        "",
        [("f", {"html": "&lt;b&gt; &amp;", "num": "12"})],
    ),
    (  # only one leading and one trailing newline are stripped
        "<tool_call>\n<function=run>\n<parameter=s>\n\n two \n\n</parameter>\n</function>\n</tool_call>",
        "",
        [("run", {"s": "\n two \n"})],
    ),
    (  # missing </parameter>; inline values; uncoercible integer stays a string; null union type
        "<tool_call><function=run><parameter=n>abc<parameter=maybe>null<parameter=b>False</function></tool_call>",
        "",
        [("run", {"n": "abc", "maybe": None, "b": False})],
    ),
    (  # two calls in a row, text between them
        call("f", {}) + "\nand\n" + call("run", {"n": -7}),
        "\nand\n",
        [("f", {}), ("run", {"n": -7})],
    ),
    (  # truncated output
        "<tool_call>\n<function=run>\n<parameter=s>\nhalf a str",
        "",
        [("run", {"s": "half a str"})],
    ),
]

MALFORMED = [
    '<tool_call>\n{"name": "f"}\n</tool_call>',
    "<tool_call><function></function></tool_call>",
    "<tool_call><function=a<b>x</function></tool_call>",
    "<tool_call>",
    "<tool_call>\n<function=ru",
    "if a < b: <tool",
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


def test_string_values_stream_before_the_parameter_closes() -> None:
    p = QwenXmlToolParser(TOOLS)
    d = p.feed("<tool_call>\n<function=run>\n<parameter=s>\nline one\n")
    assert d.calls[0].name == "run"
    assert d.calls[0].arguments_delta == '{"s": "line one'  # trailing newline held (may be stripped)
    d = p.feed('line "two"</para')
    assert d.calls[0].arguments_delta == '\\nline \\"two\\"'
    d = p.feed("meter>\n<parameter=n>\n5")
    assert d.calls[0].arguments_delta == '", "n": '  # typed values wait for completion
    d = p.feed("\n</parameter>\n</function>\n</tool_call>")
    assert d.calls[0].arguments_delta == "5}"


def test_alias_and_schema_free_mode() -> None:
    assert isinstance(get_tool_parser("qwen_coder", TOOLS), QwenXmlToolParser)
    r = QwenXmlToolParser().parse(call("anything", {"n": 3}))
    assert calls_of(r) == [("anything", {"n": "3"})]  # no schema: values are strings


def test_unknown_tool_skipped_without_breaking_indexes() -> None:
    text = call("zzz", {"n": 1}) + call("run", {"n": 1}) + "x" + call("yyy", {}) + call("f", {"s": "v"})
    r = QwenXmlToolParser(TOOLS).parse(text)
    assert calls_of(r) == [("run", {"n": 1}), ("f", {"s": "v"})]
    assert r.normal_text == "x"
    p = QwenXmlToolParser(TOOLS)
    deltas = stream_deltas(p, split_sizes(text, [3]))
    assert named_indexes(deltas) == {0: "run", 1: "f"}


def test_state_does_not_leak_between_instances() -> None:
    a, b = QwenXmlToolParser(TOOLS), QwenXmlToolParser(TOOLS)
    a.feed("<tool_call>\n<function=run>\n<parameter=s>\nabc")
    assert b.parse(call("f", {})).calls[0].name == "f"
    assert a.finish().calls[0].arguments_delta == '"}'


# ----- property tests -------------------------------------------------------------------------------
safe_text = plain_text("<", 15)
json_leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=6)
run_args = st.fixed_dictionaries(
    {},
    optional={
        "s": safe_text,
        "n": st.integers(-(10**9), 10**9),
        "x": st.floats(allow_nan=False, allow_infinity=False),
        "b": st.booleans(),
        "o": st.dictionaries(st.text(max_size=4), json_leaf, max_size=3),
        "a": st.lists(json_leaf, max_size=3),
        "extra": safe_text,
    },
)
f_args = st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), safe_text, max_size=3)
call_st = st.one_of(st.tuples(st.just("run"), run_args), st.tuples(st.just("f"), f_args))
segments_st = st.lists(st.one_of(safe_text, call_st), max_size=5)


def render(segments: list) -> tuple[str, str, list]:
    text, normal, calls = [], [], []
    for seg in segments:
        if isinstance(seg, str):
            text.append(seg)
            normal.append(seg)
        else:
            text.append(call(*seg))
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
            *("<tool_call>", "</tool_call>", "<function=", "run>", "f>", "</function>", "<parameter=", "n>"),
            *("s>", "</parameter>", "</para", "<", ">", "\n", " ", "x", "1", "true", '{"a": 1}', "é", '"'),
        ]
    ),
    max_size=30,
).map("".join)


@SETTINGS
@given(pieces_st, sizes_st)
def test_property_arbitrary_fragments(text: str, sizes: list[int]) -> None:
    check_fragments(MAKE, text, sizes)
