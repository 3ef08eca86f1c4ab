"""The tiktoken fast path for byte-level BPE tokenizers gives the HF `tokenizers` ids exactly, or is not used."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer

from herder.tokenization import Tokenizer, load_tokenizer
from herder.tokenization.chat_template import ChatTemplate
from herder.tokenization.fast_bpe import fast_encoder
from herder.tokenization.tokenizer import HFBackend

pytest.importorskip("tiktoken")

# Pieces that stress the pre-tokenizer and the BPE: scripts, digits, whitespace runs and kinds, contractions,
# emoji (with joiners), combining marks (text that is not NFC), symbols, and code.
PIECES = [
    "a", "Z", "the", " the", "  ", "   ", "\n", "\n\n", "\t", "\r\n", " \n ", "0", "7", "42", "12345", "3.14",
    "'s", "'t", "'re", "'LL", "'D", "don't", "I'm", "中文", "字", "日本語", "한국어", "😀", "🚀", "👩\u200d👩\u200d👧",
    "e\u0301", "\u0301", "n\u0303", "é", "ß", "ﬃ", "Å", "\u00a0", "\u2003", "\u200b", "\u3000", ",", ".", "!", "?",
    "...", "--", "->", "=>", "{", "}", "(", ")", "[", "]", "<", ">", "/", "\\", "|", "#", "@", "$", "%", "^",
    "&", "*", "_", "+", "=", "~", "`", '"', "def f(x):", "    return x", "<tag>", "</tag>", "©", "∑", "≥",
]


def _reference(tok: Tokenizer) -> Any:
    backend = tok.backend
    assert isinstance(backend, HFBackend)
    return backend.tok


def _texts(specials: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(PIECES + specials), max_size=40).map("".join)


@pytest.fixture(scope="module")
def fast_tokenizers(qwen: Tokenizer, llama3: Tokenizer) -> dict[str, tuple[Tokenizer, list[str]]]:
    """The tokenizers on the fast path, each with the added tokens its random texts mix in."""
    return {"qwen3": (qwen, [t.content for t in qwen.added_tokens]),
            "llama3": (llama3, [t.content for t in llama3.added_tokens][:12])}


def test_qwen3_and_llama3_take_the_fast_path(qwen: Tokenizer, llama3: Tokenizer) -> None:
    qb, lb = qwen.backend, llama3.backend
    assert isinstance(qb, HFBackend) and isinstance(lb, HFBackend)
    assert qb.fast is not None and qb.fast.nfc and qb.fast.prefix == []
    # Llama 3 adds <|begin_of_text|> with add_special_tokens=True; no normalizer.
    assert lb.fast is not None and not lb.fast.nfc and lb.fast.prefix == [128000]


@pytest.mark.parametrize("name", ["qwen3", "llama3"])
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fast_ids_equal_the_tokenizers_library(data: st.DataObject, name: str,
                                               fast_tokenizers: dict[str, tuple[Tokenizer, list[str]]]) -> None:
    tok, specials = fast_tokenizers[name]
    text = data.draw(_texts(specials))
    ref = _reference(tok)
    for add in (False, True):
        assert tok.encode(text, add) == ref.encode(text, add_special_tokens=add).ids, repr(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_arbitrary_unicode_equals_the_tokenizers_library(text: str, qwen: Tokenizer, llama3: Tokenizer) -> None:
    for tok in (qwen, llama3):
        assert tok.encode(text) == _reference(tok).encode(text, add_special_tokens=False).ids, repr(text)


def test_a_rendered_chat_prompt_and_a_long_text(qwen: Tokenizer) -> None:
    template = ChatTemplate.from_tokenizer(qwen)
    assert template is not None
    prompt = template.render(
        [{"role": "system", "content": "You are a helpful assistant. " * 50},
         {"role": "user", "content": "Write 3 haiku about the sea, in English and 日本語. 🚀"}],
    )
    assert "<|im_start|>" in prompt
    long = " ".join(f"word{i % 97} {i}" for i in range(5000))
    ref = _reference(qwen)
    for text in (prompt, long):
        assert qwen.encode(text) == ref.encode(text, add_special_tokens=False).ids
        assert qwen.encode_batch([text, text[:100]]) == [e.ids for e in ref.encode_batch([text, text[:100]],
                                                                                         add_special_tokens=False)]


def test_text_that_is_not_nfc_goes_to_the_tokenizers_library(qwen: Tokenizer) -> None:
    backend = qwen.backend
    assert isinstance(backend, HFBackend) and backend.fast is not None
    text = "cafe\u0301 <|im_end|>\u0338"  # composes under NFC, the second across a special token's end
    assert backend.fast.encode(text, False) is None
    assert qwen.encode(text) == _reference(qwen).encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def qwen_spec(qwen_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((qwen_dir / "tokenizer.json").read_text())
    return data


class Untouched:
    """Stands for the HF tokenizer where the checks must decline before encoding anything with it."""

    touched = False

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self.touched = True
        raise RuntimeError("the structural checks should have declined")


@pytest.mark.parametrize("change", ["normalizer", "byte_fallback", "merge_order", "lstrip", "prefix_space",
                                    "prefix_token", "truncation"])
def test_tokenizers_it_cannot_match_keep_the_reference_path(qwen_spec: dict[str, Any], change: str) -> None:
    spec = dict(qwen_spec)  # copies of what each case changes; the vocabulary is shared
    model = spec["model"] = dict(qwen_spec["model"])
    added = spec["added_tokens"] = [dict(t) for t in qwen_spec["added_tokens"]]
    if change == "normalizer":
        spec["normalizer"] = {"type": "NFKC"}
    elif change == "byte_fallback":
        model["byte_fallback"] = True
    elif change == "merge_order":
        merges = model["merges"] = list(model["merges"])
        merges[10], merges[5000] = merges[5000], merges[10]
    elif change == "lstrip":
        added[0]["lstrip"] = True
    elif change == "prefix_space":
        pre = spec["pre_tokenizer"] = copy.deepcopy(qwen_spec["pre_tokenizer"])
        pre["pretokenizers"][1]["add_prefix_space"] = True
    elif change == "prefix_token":
        added.append({**added[0], "id": added[0]["id"] + 1000, "content": added[0]["content"] + "x"})
    elif change == "truncation":
        spec["truncation"] = {"direction": "Right", "max_length": 512, "strategy": "LongestFirst", "stride": 0}
    hf = Untouched()
    assert fast_encoder(hf, spec) is None
    assert not hf.touched


def test_a_split_pattern_that_skips_characters_is_caught_by_the_probes(qwen_spec: dict[str, Any]) -> None:
    """HF keeps the text between a pattern's matches as pieces; tiktoken would drop it. This pattern misses only
    combining marks, which none of the hand-written probes contain: the every-block sample catches it."""
    spec = dict(qwen_spec)
    pre = spec["pre_tokenizer"] = copy.deepcopy(qwen_spec["pre_tokenizer"])
    pre["pretokenizers"][0]["pattern"]["Regex"] = r"[^\p{Mn}\s]+|\s+"
    hf = HFTokenizer.from_str(json.dumps(spec))
    assert len(hf.encode("x\u0301", add_special_tokens=False).ids) == 2  # HF keeps the mark
    assert fast_encoder(hf, spec) is None


def test_the_unchanged_spec_qualifies(qwen: Tokenizer, qwen_spec: dict[str, Any]) -> None:
    assert fast_encoder(_reference(qwen), dict(qwen_spec)) is not None


def test_the_environment_can_turn_it_off(qwen_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERDER_FAST_BPE", "0")
    backend = load_tokenizer(qwen_dir).backend
    assert isinstance(backend, HFBackend) and backend.fast is None
