"""Kimi-K2 (``kimik2``) and Kimi-K3 XTML (``kimi_k3``) tool-call parsers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import aggregate_deltas
from herder.parsers.tools.kimi import KimiK2ToolParser, KimiK3ToolParser
from tests.unit.parsers.tools.tool_test_support import CUTS, calls_of, check_stream, split_at, stream_deltas

SB, SE = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "search.web", "parameters": {"type": "object"}}},
]


def k2(cid: str, args: str) -> str:
    return f"<|tool_call_begin|>{cid}<|tool_call_argument_begin|>{args}<|tool_call_end|>"


K2 = (
    "Let me check.\n"
    + SB
    + k2("functions.get_weather:0", '{"city": "北京", "when": {"day": "今天", "hours": [9, 12]}}')
    + k2("functions.search.web:1", '{"q": "a \\"quoted\\" \\\\ thing"}')
    + SE
)
K2_SAMPLES = [
    K2,
    K2 + " after",
    SB
    + " "
    + k2("get_weather:0", "{}")
    + "\n"
    + k2("functions.nope:1", '{"x": 1}')
    + "\n"
    + k2("functions.search.web:2", '{"q": 1}')
    + SE,
    k2("functions.get_weather:0", '{"city": "Rome"}') + " bare call then text",
    SB + k2("functions.get_weather:0", "not json") + SE,
    SB + k2("functions.get_weather:0", '{"city": "Par')[:-17],
    SB + k2("bad id with spaces", "{}") + SE,
    "x <|tool_calls_sec",
]


def test_k2_one_shot() -> None:
    r = KimiK2ToolParser().parse(K2)
    assert r.normal_text == "Let me check.\n"
    assert calls_of(r) == [
        ("get_weather", {"city": "北京", "when": {"day": "今天", "hours": [9, 12]}}),
        ("search.web", {"q": 'a "quoted" \\ thing'}),
    ]


def test_k2_unknown_skipped_and_ordinal_indexes() -> None:
    p = KimiK2ToolParser(TOOLS)
    deltas = stream_deltas(p, list(K2_SAMPLES[2]))
    agg = aggregate_deltas(deltas)
    assert [c.name for c in agg.calls] == ["get_weather", "search.web"]
    assert {c.index for d in deltas for c in d.calls} == {0, 1}


def test_k2_bare_call_without_section() -> None:
    r = KimiK2ToolParser().parse(K2_SAMPLES[3])
    assert calls_of(r) == [("get_weather", {"city": "Rome"})]
    assert r.normal_text == " bare call then text"


def test_k2_malformed_is_text() -> None:
    for text in (K2_SAMPLES[4], K2_SAMPLES[6]):
        r = KimiK2ToolParser().parse(text)
        assert r.calls == [] and r.normal_text == text


def test_k2_truncated_closed() -> None:
    r = KimiK2ToolParser().parse(K2_SAMPLES[5])
    assert calls_of(r) == [("get_weather", {"city": "Par"})]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(K2_SAMPLES), CUTS)
def test_k2_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(KimiK2ToolParser, text, split_at(text, cuts))
    check_stream(lambda: KimiK2ToolParser(TOOLS), text, split_at(text, cuts))


# ----- Kimi-K3 -----

OP, C, S = "<|open|>", "<|close|>", "<|sep|>"


def arg(key: str, typ: str, value: str) -> str:
    return f'{OP}argument key="{key}" type="{typ}"{S}{value}{C}argument{S}'


def kcall(tool: str, index: int, *args: str) -> str:
    return f'{OP}call tool="{tool}" index="{index}"{S}' + "".join(args) + f"{C}call{S}"


def tools_ch(*calls: str) -> str:
    return f"{OP}tools{S}" + "".join(calls) + f"{C}tools{S}"


K3 = (
    f"{OP}response{S}I'll compute it — 计算.{C}response{S}"
    + tools_ch(
        kcall(
            "calc",
            7,
            arg("x", "number", "1.5"),
            arg("flag", "boolean", "true"),
            arg("text", "string", 'raw "q" \\n'),
        ),
        kcall(
            "a&amp;b&quot;c",
            7,
            arg("k&amp;q", "string", "v"),
            arg("obj", "object", '{"n": [1, {"m": null}]}'),
        ),
    )
    + f"{C}message{S}"
)
K3_SAMPLES = [
    K3,
    "prefilled answer" + f"{C}response{S}" + tools_ch(kcall("calc", 0, arg("x", "number", "oops"))),
    tools_ch(kcall("calc", 0), kcall("", 1, arg("a", "string", "b"))),
    f"{OP}response{S}no close, then tools" + tools_ch(kcall("calc", 1)),
    tools_ch(kcall("calc", 1, arg("code", "string", "line1\nline2 <|close|>argum"))),
    tools_ch(kcall("calc", 1, arg("code", "string", "trunc")))[:-30],
    f"{OP}tools{S}garbage{C}tools{S}",
    f"text {OP}respo",
]


def test_k3_one_shot() -> None:
    r = KimiK3ToolParser().parse(K3)
    assert r.normal_text == "I'll compute it — 计算."
    assert calls_of(r) == [
        ("calc", {"x": 1.5, "flag": True, "text": 'raw "q" \\n'}),
        ('a&b"c', {"k&q": "v", "obj": {"n": [1, {"m": None}]}}),
    ]


def test_k3_prefilled_response_and_bad_json_falls_back() -> None:
    r = KimiK3ToolParser().parse(K3_SAMPLES[1])
    assert r.normal_text == "prefilled answer"
    assert calls_of(r) == [("calc", {"x": "oops"})]


def test_k3_no_args_and_nameless_call() -> None:
    r = KimiK3ToolParser().parse(K3_SAMPLES[2])
    assert calls_of(r) == [("calc", {})]


def test_k3_unclosed_response_stops_at_tools() -> None:
    r = KimiK3ToolParser().parse(K3_SAMPLES[3])
    assert r.normal_text == "no close, then tools"
    assert [c.name for c in r.calls] == ["calc"]


def test_k3_garbage_tools_channel_is_text() -> None:
    r = KimiK3ToolParser().parse(K3_SAMPLES[6])
    assert r.calls == [] and r.normal_text == K3_SAMPLES[6]


def test_k3_response_markers_never_leak_when_streaming() -> None:
    p = KimiK3ToolParser()
    text = f"{OP}response{S}Hi there{C}response{S}"
    out = "".join(p.feed(ch).normal_text for ch in text) + p.finish().normal_text
    assert out == "Hi there"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(K3_SAMPLES), CUTS)
def test_k3_any_chunking(text: str, cuts: list[int]) -> None:
    check_stream(KimiK3ToolParser, text, split_at(text, cuts))
    check_stream(lambda: KimiK3ToolParser(TOOLS), text, split_at(text, cuts))
