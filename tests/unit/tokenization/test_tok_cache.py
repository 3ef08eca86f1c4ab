"""L0/L1 caches: results identical to the uncached tokenizer; bounds; hit accounting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.tokenization import CachedTokenizer, ChatTemplate, L0Cache, Tokenizer, load_tokenizer

# Text that stresses boundaries: special tokens inside content, near-miss specials, whitespace, non-ASCII.
_PIECES = st.sampled_from(
    ["<|im_end|>", "<|im_start|>", "<think>", "</think>", "<|im_e", "|>", "<", "\n", "\n\n", " ", "  ", "\t",
     "hello", "World", "123", "4.5", "é", "日本語", "🙂", "👩‍💻", "```py\n", "{\"a\": 1}", "<tool_call>"]
)  # fmt: skip
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=8).map("".join)

_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool", "system"]), "content": _TEXT}
)
_CONVERSATION = st.tuples(
    st.one_of(st.none(), _TEXT),  # system prompt
    st.lists(_MESSAGE, min_size=1, max_size=6),
    st.booleans(),  # tools
    st.booleans(),  # enable_thinking
    st.booleans(),  # add_generation_prompt
)

TOOL = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def qwen_template(qwen: Tokenizer) -> ChatTemplate:
    template = ChatTemplate.from_tokenizer(qwen)
    assert template is not None
    return template


@pytest.fixture(scope="module")
def shared_cache(qwen: Tokenizer) -> CachedTokenizer:
    # Shared across examples on purpose: later conversations hit prefixes cached by earlier ones.
    return CachedTokenizer(qwen, l0_max_entries=64, l1_max_bytes=2 * 1024 * 1024)


def _render(template: ChatTemplate, conv: tuple[Any, ...]) -> str:
    system, messages, tools, thinking, gen = conv
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + list(messages)
    return template.render(
        msgs, tools=[TOOL] if tools else None, add_generation_prompt=gen,
        chat_template_kwargs={"enable_thinking": thinking},
    )  # fmt: skip


def test_l1_is_enabled_for_qwen(shared_cache: CachedTokenizer) -> None:
    assert shared_cache.l1 is not None, shared_cache.l1_disabled_reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conv=_CONVERSATION, extra=_TEXT)
def test_cached_encode_equals_uncached_on_conversations(
    qwen: Tokenizer,
    qwen_template: ChatTemplate,
    shared_cache: CachedTokenizer,
    conv: tuple[Any, ...],
    extra: str,
) -> None:
    text = _render(qwen_template, conv)
    expected = qwen.encode(text)
    assert shared_cache.encode(text) == expected  # miss (or L1 partial hit)
    assert shared_cache.encode(text) == expected  # L0 hit
    # The same conversation continued: its prefix up to the last special token is in L1 now.
    longer = text + "<|im_end|>\n<|im_start|>user\n" + extra
    assert shared_cache.encode(longer) == qwen.encode(longer)
    # add_special_tokens=True bypasses L1 and must still match.
    assert shared_cache.encode(text, add_special_tokens=True) == qwen.encode(text, add_special_tokens=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_TEXT, min_size=1, max_size=5))
def test_cached_encode_equals_uncached_on_raw_text(
    qwen: Tokenizer, shared_cache: CachedTokenizer, parts: list[str]
) -> None:
    # Growing texts that share prefixes, encoded in order: exercises L1 hits on arbitrary boundaries.
    for i in range(1, len(parts) + 1):
        text = "<|im_end|>".join(parts[:i])
        assert shared_cache.encode(text) == qwen.encode(text)


def test_l1_hits_on_a_growing_conversation(qwen: Tokenizer, qwen_template: ChatTemplate) -> None:
    cached = CachedTokenizer(qwen, enable_l0=False)
    msgs: list[dict[str, str]] = [{"role": "system", "content": "You are helpful. " * 50}]
    for turn in range(6):
        msgs.append({"role": "user", "content": f"Question {turn}: " + "why? " * 20})
        text = qwen_template.render(msgs)
        assert cached.encode(text) == qwen.encode(text)
        msgs.append({"role": "assistant", "content": f"Answer {turn}. " * 10})
    assert cached.l1 is not None
    assert cached.l1.stats.hits == 5 and cached.l1.stats.misses == 1
    assert cached.l1_hit_rate == pytest.approx(5 / 6)
    assert cached.l1.tokens_saved > 0


def test_returned_lists_are_copies(qwen: Tokenizer) -> None:
    cached = CachedTokenizer(qwen)
    first = cached.encode("hello<|im_end|>world")
    first.append(-1)
    assert cached.encode("hello<|im_end|>world") == qwen.encode("hello<|im_end|>world")


def test_l0_lru_and_entry_bound() -> None:
    cache = L0Cache(max_entries=2, max_bytes=1 << 20)
    cache.put("a", False, [1])
    cache.put("b", False, [2])
    assert cache.get("a", False) == [1]  # "a" is now most recent
    cache.put("c", False, [3])  # evicts "b"
    assert cache.get("b", False) is None
    assert cache.get("a", False) == [1] and cache.get("c", False) == [3]
    assert cache.get("a", True) is None  # add_special_tokens is part of the key
    assert len(cache) == 2
    assert (cache.stats.hits, cache.stats.misses) == (3, 2)


def test_l0_byte_bound() -> None:
    cache = L0Cache(max_entries=1000, max_bytes=4000)
    for i in range(50):
        cache.put(f"text {i} " + "x" * 100, False, list(range(100)))
        assert cache.bytes <= 4000
    assert 0 < len(cache) < 50
    cache.put("huge" * 10_000, False, [1])  # larger than the whole budget: not stored
    assert cache.get("huge" * 10_000, False) is None
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0


def test_l1_byte_bound(qwen: Tokenizer) -> None:
    cached = CachedTokenizer(qwen, enable_l0=False, l1_max_bytes=20_000)
    assert cached.l1 is not None
    for i in range(40):
        text = f"conversation {i} " * 100 + "<|im_end|>" + "tail" * 5
        assert cached.encode(text) == qwen.encode(text)
        assert cached.l1.bytes <= 20_000
    assert len(cached.l1) < 40


def test_l1_disabled_when_prefix_split_is_unsafe(tmp_path: Any) -> None:
    # A Metaspace pre-tokenizer that prepends "▁" only to the first section: splitting after a special token
    # would give the suffix its own "▁", so L1 must turn itself off.
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {"<unk>": 0, "▁": 1, "▁a": 2, "a": 3, "b": 4, "▁b": 5, "<sep>": 6, "▁z": 7, "z": 8}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    hf.add_special_tokens(["<sep>"])
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = load_tokenizer(path)
    cached = CachedTokenizer(tok)
    if tok.encode("a<sep>b") == tok.encode("a<sep>") + tok.encode("b"):
        pytest.skip("this tokenizers version prepends per section; nothing to guard against")
    assert cached.l1 is None and cached.l1_disabled_reason
    assert cached.encode("a<sep>b") == tok.encode("a<sep>b")


async def test_encode_async_matches_encode(qwen: Tokenizer) -> None:
    cached = CachedTokenizer(qwen)
    long_text = "<|im_start|>user\n" + "Il était une fois 🙂 " * 600 + "<|im_end|>"
    short_text = "hi<|im_end|>"
    assert await cached.encode_async(long_text) == qwen.encode(long_text)
    assert await cached.encode_async(long_text) == qwen.encode(long_text)
    assert await cached.encode_async(short_text) == qwen.encode(short_text)
    assert await qwen.encode_async(long_text) == qwen.encode(long_text)
    assert cached.l0 is not None and cached.l0.stats.hits == 1
    assert cached.encode_batch([short_text, long_text]) == qwen.encode_batch([short_text, long_text])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_TEXT, min_size=1, max_size=4))
def test_tiktoken_cached_encode_equals_uncached(cl100k: Tokenizer, parts: list[str]) -> None:
    cached = CachedTokenizer(cl100k)
    assert cached.l1 is not None, cached.l1_disabled_reason
    for i in range(1, len(parts) + 1):
        text = "<|endoftext|>".join(parts[:i])
        assert cached.encode(text) == cl100k.encode(text)


def test_stats_shape_for_metrics(qwen: Tokenizer) -> None:
    cached = CachedTokenizer(qwen)
    fresh = cached.stats()
    assert fresh["l0"]["entries"] == 0 and fresh["l1"]["entries"] == 0  # present even while empty
    cached.encode("a<|im_end|>b")
    cached.encode("a<|im_end|>b")
    stats = cached.stats()
    assert stats["l0"]["hits"] == 1 and stats["l0"]["misses"] == 1 and cached.l0_hit_rate == 0.5
    assert stats["fingerprint"] == qwen.fingerprint
    off = CachedTokenizer(qwen, enable_l0=False, enable_l1=False)
    assert off.stats() == {"fingerprint": qwen.fingerprint} and off.l0_hit_rate == 0.0
