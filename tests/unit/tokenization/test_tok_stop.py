"""The stop-sequence jail: emitted text is exactly the text before the first stop, whatever the split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.tokenization import OutputDecoder, StopSequenceDecoder, Tokenizer

# A small alphabet so stop strings actually occur; includes non-ASCII.
_CHARS = st.sampled_from(list("abcé日🙂 \n"))
_TEXT = st.lists(_CHARS, max_size=40).map("".join)
_STOP = st.lists(_CHARS, min_size=1, max_size=4).map("".join)
_SPLITS = st.lists(st.integers(min_value=0, max_value=40), max_size=12)


def first_stop(text: str, stops: list[str]) -> tuple[int, int, str] | None:
    """Reference: the occurrence that ends earliest (ties: the longest); (start, end, stop)."""
    best: tuple[int, int, str] | None = None
    for s in stops:
        i = text.find(s)
        while i >= 0:
            cand = (i, i + len(s), s)
            if best is None or (cand[1], cand[0]) < (best[1], best[0]):
                best = cand
            i = text.find(s, i + 1)
    return best


def _chunks(text: str, splits: list[int]) -> list[str]:
    cuts = sorted({min(c, len(text)) for c in splits})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, stops=st.lists(_STOP, min_size=1, max_size=3), splits=_SPLITS, trim=st.booleans())
def test_jail_property(text: str, stops: list[str], splits: list[int], trim: bool) -> None:
    dec = StopSequenceDecoder(stop=stops, no_stop_trim=not trim)
    emitted = ""
    result = None
    for chunk in _chunks(text, splits):
        result = dec.feed(chunk)
        emitted += result.text
        # Never leak: what was sent so far never contains a stop string (when trimming).
        if trim:
            assert not any(s in emitted for s in stops)
        if result.stopped:
            break
    if result is None or not result.stopped:
        final = dec.finish()
        emitted += final.text
    ref = first_stop(text, stops)
    if ref is None:
        assert emitted == text
        assert not dec.stopped
    else:
        start, end, s = ref
        assert dec.stopped and dec.matched == s
        assert emitted == (text[:start] if trim else text[:end])


def test_held_text_is_released_when_it_cannot_match() -> None:
    dec = StopSequenceDecoder(stop=["</answer>"])
    assert dec.feed("The </ans").text == "The "
    r = dec.feed("wer is 4")
    assert (r.text, r.stopped) == ("</answer is 4", False)
    r = dec.feed(". </answer> tail")
    assert (r.text, r.stopped, r.matched) == (". ", True, "</answer>")
    assert dec.feed("more").text == "" and dec.finish().text == ""


def test_stop_token_ids_hidden_and_visible() -> None:
    hidden = StopSequenceDecoder(stop=["XYZ"], stop_token_ids=[7])
    assert hidden.feed("abc X", 1).text == "abc "
    r = hidden.feed("<eos>", 7)
    assert (r.text, r.stopped, r.matched) == ("X", True, 7)  # held text flushed, the token's text dropped

    visible = StopSequenceDecoder(visible_stop_token_ids=[9])
    r = visible.feed("done<|end|>", 9)
    assert (r.text, r.stopped, r.matched) == ("done<|end|>", True, 9)

    kept = StopSequenceDecoder(stop_token_ids=[7], no_stop_trim=True)
    assert kept.feed("<eos>", 7).text == "<eos>"


def test_visible_stop_string() -> None:
    dec = StopSequenceDecoder(stop=["!"], visible_stop=["END"])
    assert dec.feed("abc EN").text == "abc "
    r = dec.feed("D!")
    assert (r.text, r.matched) == ("END", "END")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.lists(
        st.sampled_from(["日本", "語", "🙂", "é", "the ", "end", " ", "\n", "ok"]), max_size=25
    ).map("".join),
    stop=st.sampled_from(["日本語", "🙂é", "end\n", "é"]),
)
def test_real_tokens_with_split_characters(qwen: Tokenizer, text: str, stop: str) -> None:
    ids = qwen.encode(text)
    assert qwen.decode(ids) == text
    decoder = OutputDecoder.create(qwen, stop=[stop])
    out = ""
    for tid in ids:
        r = decoder.feed([tid])
        out += r.text
        assert stop not in out
        if r.stopped:
            break
    else:
        out += decoder.finish().text
    idx = text.find(stop)
    assert out == (text if idx < 0 else text[:idx])


def test_output_decoder_stops_on_eos_inside_a_chunk(qwen: Tokenizer) -> None:
    eos = qwen.eos_token_ids[0]
    ids = [*qwen.encode("Hi there"), eos, *qwen.encode("ignored")]
    decoder = OutputDecoder.create(qwen, stop_token_ids=qwen.eos_token_ids)
    r = decoder.feed(ids)
    assert (r.text, r.stopped, r.matched) == ("Hi there", True, eos)
    assert decoder.finish().stopped


@pytest.mark.parametrize("stops", [[], ["zz"]])
def test_no_stop_passthrough(stops: list[str]) -> None:
    dec = StopSequenceDecoder(stop=stops)
    assert dec.feed("hello").text == "hello"
    assert dec.finish().text == ""
