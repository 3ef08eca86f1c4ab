"""Incremental detokenization: any grouping of the ids gives exactly the full decode."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.tokenization import IncrementalDetokenizer, Tokenizer

# Emoji (incl. ZWJ sequences and flags), CJK, accented Latin (composed and combining), Arabic, ASCII.
_ALPHABET = st.sampled_from(
    [
        *list("aé e\u0301ñüßøÆ日本語中文한국어😀🙂👍🏽🇫🇷👩‍💻🫠𓀀∑→€£\n\t  ,.!?0123456789مرحبا"),
        *["<|im_end|>", "<think>", "Hello", " world", "\ufffd"],
    ]
)
_TEXT = st.lists(_ALPHABET, min_size=1, max_size=60).map("".join)
_CUTS = st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=40)

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _groups(ids: list[int], sizes: list[int]) -> list[list[int]]:
    out, i, k = [], 0, 0
    while i < len(ids):
        n = sizes[k % len(sizes)]
        out.append(ids[i : i + n])
        i, k = i + n, k + 1
    return out


def _stream(tok: Tokenizer, groups: list[list[int]], skip: bool) -> tuple[str, list[str]]:
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip)
    deltas = [detok.feed(g) for g in groups]
    deltas.append(detok.finish())
    return "".join(deltas), deltas


@pytest.mark.parametrize("name", ["qwen", "llama3", "deepseek", "cl100k"])
@pytest.mark.parametrize("skip", [True, False])
@SETTINGS
@given(text=_TEXT, sizes=_CUTS)
def test_any_grouping_equals_full_decode(
    request: pytest.FixtureRequest, name: str, skip: bool, text: str, sizes: list[int]
) -> None:
    tok: Tokenizer = request.getfixturevalue(name)
    ids = tok.encode(text)
    expected = tok.decode(ids, skip_special_tokens=skip)
    one_by_one, deltas = _stream(tok, [[i] for i in ids], skip)
    assert one_by_one == expected
    grouped, _ = _stream(tok, _groups(ids, sizes), skip)
    assert grouped == expected
    # No delta before the last ends in a replacement char unless the text itself has one there.
    if "\ufffd" not in text:
        assert not any(d.endswith("\ufffd") for d in deltas[:-1])


def test_split_multibyte_character_is_held(qwen: Tokenizer) -> None:
    ids = qwen.encode("🫠")
    assert len(ids) > 1, "the test needs an emoji split over several byte tokens"
    detok = IncrementalDetokenizer(qwen)
    assert [detok.feed(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert detok.feed(ids[-1]) == "🫠"
    assert detok.finish() == ""


def test_incomplete_tail_is_flushed_on_finish(qwen: Tokenizer) -> None:
    ids = qwen.encode("ok 🫠")[:-1]  # cut inside the emoji
    detok = IncrementalDetokenizer(qwen)
    text = "".join(detok.feed(i) for i in ids) + detok.finish()
    assert text == qwen.decode(ids)
    assert text.startswith("ok ") and text.endswith("\ufffd")


def test_special_tokens_skipped_or_kept(qwen: Tokenizer) -> None:
    ids = qwen.encode("a<|im_end|>b")
    skipped = IncrementalDetokenizer(qwen, skip_special_tokens=True)
    kept = IncrementalDetokenizer(qwen, skip_special_tokens=False)
    assert "".join(skipped.feed(i) for i in ids) + skipped.finish() == "ab"
    assert "".join(kept.feed(i) for i in ids) + kept.finish() == "a<|im_end|>b"


def test_with_prompt_context(llama3: Tokenizer) -> None:
    prompt = llama3.encode("The answer is")
    out = llama3.encode(" forty-two, naïvely 🙂")
    detok = IncrementalDetokenizer.with_prompt(llama3, prompt)
    text = "".join(detok.feed(i) for i in out) + detok.finish()
    assert text == llama3.decode(out)
