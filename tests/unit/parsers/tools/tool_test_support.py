"""Helpers shared by the tool-parser tests (not a test module).

Two styles of test use them:

* the size-split style (json, mistral, qwen, ...): ``split_sizes`` cuts text into chunks of cycling sizes,
  the ``check_*`` helpers hold the contract every parser shares (one-shot, fixed chunks, malformed input,
  and the hypothesis round-trip / truncation / fragment properties);
* the cut-point style (deepseek, glm, kimi, ...): ``split_at`` cuts text at arbitrary points and
  ``check_stream`` compares the streamed deltas with the one-shot result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from herder.parsers.tools.base import (
    ToolParser,
    ToolParseResult,
    ToolStreamDelta,
    aggregate_deltas,
    stream_chunks,
)

MakeParser = Callable[[], ToolParser]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ("get_weather", "search", "f")


def tool_specs(*names: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """OpenAI-style function tools with these names, each with its own copy of ``parameters``."""
    return [
        {"type": "function", "function": {"name": n, "parameters": dict(parameters or {})}} for n in names
    ]


# ----- splitting and streaming ----------------------------------------------------------------------
def split_sizes(text: str, sizes: list[int]) -> list[str]:
    """Consecutive chunks whose lengths cycle through ``sizes`` (1 if empty)."""
    out, i, k = [], 0, 0
    while i < len(text):
        step = sizes[k % len(sizes)] if sizes else 1
        out.append(text[i : i + step])
        i += step
        k += 1
    return out


def split_at(text: str, cuts: list[int]) -> list[str]:
    """Chunks cut at the points ``cuts`` (taken modulo ``len(text) + 1``; empty chunks possible)."""
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]


def stream_deltas(parser: ToolParser, chunks: Iterable[str]) -> list[ToolStreamDelta]:
    """Every delta of feeding ``chunks`` then finishing."""
    return [parser.feed(c) for c in chunks] + [parser.finish()]


def named_indexes(deltas: list[ToolStreamDelta]) -> dict[int, str]:
    """Call index -> name, from the deltas that carry a name."""
    return {c.index: c.name for d in deltas for c in d.calls if c.name}


def calls_of(r: ToolParseResult) -> list[tuple[str, Any]]:
    """(name, decoded arguments) of each call."""
    return [(c.name, json.loads(c.arguments)) for c in r.calls]


def assert_same(a: ToolParseResult, b: ToolParseResult) -> None:
    assert a.normal_text == b.normal_text
    assert calls_of(a) == calls_of(b)


def check_stream(make: MakeParser, text: str, chunks: list[str]) -> None:
    """Streamed deltas == one-shot result; names first and once; contiguous indexes."""
    one = make().parse(text)
    deltas = stream_deltas(make(), chunks)
    named: set[int] = set()
    for d in deltas:
        for c in d.calls:
            if c.name is not None:
                assert c.index not in named
                named.add(c.index)
            assert c.index in named
    agg = aggregate_deltas(deltas)
    assert agg.normal_text == one.normal_text
    assert [c.name for c in agg.calls] == [c.name for c in one.calls]
    assert sorted(named) == list(range(len(one.calls)))
    for a, b in zip(agg.calls, one.calls, strict=True):
        assert json.loads(a.arguments) == json.loads(b.arguments)


# ----- the contract every size-split parser test checks ---------------------------------------------
def check_one_shot(make: MakeParser, text: str, normal: str, calls: list) -> None:
    r = make().parse(text)
    assert r.normal_text == normal
    assert calls_of(r) == calls


def check_fixed_chunks(make: MakeParser, text: str, normal: str, calls: list, size: int) -> None:
    r = stream_chunks(make(), split_sizes(text, [size]))
    assert r.normal_text == normal
    assert calls_of(r) == calls


def check_malformed(make: MakeParser, text: str) -> None:
    """Text that is not a valid call comes back unchanged, one-shot and one character at a time."""
    assert make().parse(text) == ToolParseResult(text, [])
    assert stream_chunks(make(), split_sizes(text, [1])) == ToolParseResult(text, [])


def check_roundtrip(make: MakeParser, text: str, normal: str, calls: list, sizes: list[int]) -> None:
    """One-shot parse gives the rendered text and calls; streaming in ``sizes`` chunks gives the same."""
    one = make().parse(text)
    assert one.normal_text == normal
    assert calls_of(one) == calls
    assert_same(stream_chunks(make(), split_sizes(text, sizes)), one)


def check_truncated(make: MakeParser, text: str, cut: int, sizes: list[int]) -> None:
    """Any prefix of the text streams to the same result as its one-shot parse."""
    text = text[: cut % (len(text) + 1)]
    assert_same(stream_chunks(make(), split_sizes(text, sizes)), make().parse(text))


def check_fragments(make: MakeParser, text: str, sizes: list[int]) -> None:
    """Arbitrary marker soup: arguments are always a JSON object and chunking changes nothing."""
    one = make().parse(text)
    for c in one.calls:
        assert isinstance(json.loads(c.arguments), dict)
    assert_same(stream_chunks(make(), split_sizes(text, sizes)), one)


# ----- hypothesis strategies ------------------------------------------------------------------------
def json_like(max_text: int, max_key: int) -> st.SearchStrategy[Any]:
    """Nested JSON-compatible values: strings up to ``max_text`` chars, object keys up to ``max_key``."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(10**12), 10**12)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=max_text)
    )
    return st.recursive(
        scalars,
        lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=max_key), ch, max_size=3),
        max_leaves=8,
    )


json_values = json_like(12, 6)
py_values = json_like(10, 5)  # what the Python-literal formats (pythonic, sarashina) are tested with
args_st = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
names_st = st.sampled_from(list(NAMES))
sizes_st = st.lists(st.integers(1, 16), min_size=1, max_size=8)
CUTS = st.lists(st.integers(0, 100_000), max_size=40)


def plain_text(excluded: str, max_size: int = 20) -> st.SearchStrategy[str]:
    """Text without the ``excluded`` characters (so it cannot start a marker) and without surrogates."""
    return st.text(
        st.characters(blacklist_characters=excluded, blacklist_categories=["Cs"]), max_size=max_size
    )
