"""Property tests: how an output is cut into chunks must not change the result.

For every family: the concatenated stream (``feed`` per chunk + ``finish``) equals the one-shot
``parse`` of the same text, with ``stream_reasoning`` on and off; for the realistic outputs that is
also the hand-written expectation. A second property fuzzes text built from tag fragments.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reasoning_cases import ALL_CASES, fragments_for, run_stream, split_at

from herder.parsers.reasoning import get_reasoning_parser, reasoning_parser_names

FAMILIES = reasoning_parser_names()
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cases_of(family: str):
    return [c for c in ALL_CASES if c.family == family]


def test_every_family_has_realistic_cases() -> None:
    assert {c.family for c in ALL_CASES} == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
@_SETTINGS
@given(data=st.data(), stream_reasoning=st.booleans())
def test_any_split_of_a_realistic_output_matches_one_shot(family: str, data, stream_reasoning: bool) -> None:
    case = data.draw(st.sampled_from(_cases_of(family)), label="case")
    cuts = data.draw(st.lists(st.integers(0, len(case.text)), max_size=40), label="cuts")
    parser = get_reasoning_parser(family, stream_reasoning=stream_reasoning)
    if case.started:
        parser.mark_reasoning_started()
    _, reasoning, normal = run_stream(parser, split_at(case.text, cuts))
    assert (reasoning, normal) == (case.reasoning, case.normal)


@pytest.mark.parametrize("family", FAMILIES)
@_SETTINGS
@given(data=st.data(), stream_reasoning=st.booleans(), started=st.booleans())
def test_any_split_of_fragment_soup_matches_one_shot(
    family: str, data, stream_reasoning: bool, started: bool
) -> None:
    pieces = data.draw(st.lists(st.sampled_from(fragments_for(family)), max_size=30), label="pieces")
    text = "".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=30), label="cuts")

    def make():
        p = get_reasoning_parser(family, stream_reasoning=stream_reasoning)
        if started:
            p.mark_reasoning_started()
        return p

    expected = make().parse(text)
    _, reasoning, normal = run_stream(make(), split_at(text, cuts))
    assert (reasoning, normal) == (expected.reasoning_text, expected.normal_text)
    # And one character at a time, the worst case for held tags.
    _, reasoning1, normal1 = run_stream(make(), list(text))
    assert (reasoning1, normal1) == (expected.reasoning_text, expected.normal_text)


@pytest.mark.parametrize("family", FAMILIES)
@_SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_without_markers_is_never_lost(family: str, text: str) -> None:
    """Output characters are a subsequence of the input: nothing is invented, duplicated or reordered."""
    r = get_reasoning_parser(family).parse(text)
    combined = r.reasoning_text + r.normal_text
    assert len(combined) <= len(text)
    # Every non-whitespace character of the output comes from the input, in order.
    it = iter(text)
    assert all(ch in it for ch in combined)
