"""Unit tests of the transport-neutral simulated engine (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.sim.engine import KvEvent, Overrides, PrefixCache, SimConfig, SimEngine
from herder.sim.text import (
    WORD_ID_BASE,
    WORDS,
    count_tokens,
    exact_pieces,
    render_chat,
    stable_hash,
)


def test_prefix_cache_hits_only_true_prefixes() -> None:
    c = PrefixCache(capacity_blocks=100, block_size=4)
    a = list(range(12))  # 3 blocks
    assert c.admit(a) == 0
    assert c.admit(a) == 12
    assert c.admit([*a[:8], 99, 98, 97, 96]) == 8  # diverges in block 3
    # same third block content after a different prefix must not hit
    b = [50, 51, 52, 53, *a[4:]]
    assert c.match(b) == 0
    assert c.match(a[:7]) == 4  # partial blocks are never counted


def test_prefix_cache_lru_capacity() -> None:
    c = PrefixCache(capacity_blocks=2, block_size=2)
    c.admit([1, 2, 3, 4])  # blocks A, AB
    c.admit([9, 9])  # evicts A (least recent)
    assert len(c) == 2
    assert c.match([1, 2, 3, 4]) == 0  # A is gone, so the chain breaks
    assert c.match([9, 9]) == 2


def test_prefix_cache_events() -> None:
    events: list[KvEvent] = []
    c = PrefixCache(capacity_blocks=2, block_size=2, listener=events.append)
    c.admit([1, 2, 3, 4])
    assert events[0].kind == "stored" and events[0].token_ids == [1, 2, 3, 4]
    assert events[0].parent_hash is None and len(events[0].block_hashes) == 2
    c.admit([1, 2, 3, 4, 5, 6])
    assert events[1].kind == "stored" and events[1].parent_hash == events[0].block_hashes[1]
    assert events[2].kind == "removed" and events[2].block_hashes == [events[0].block_hashes[0]]
    c.clear()
    assert events[-1].kind == "cleared" and len(c) == 0


def test_admission_latency_model() -> None:
    eng = SimEngine(ttft_ms=10.0, prefill_tps=1000.0, itl_ms=2.0, itl_per_running_ms=1.0, block_size=16)
    units = list(range(64))
    a1 = eng.admit(units)
    assert (a1.cached_tokens, a1.prompt_tokens) == (0, 64)
    assert abs(a1.ttft_seconds - (0.010 + 64 / 1000)) < 1e-9
    a2 = eng.admit(units)
    assert a2.cached_tokens == 64 and abs(a2.ttft_seconds - 0.010) < 1e-9
    r1 = eng.start("/generate", [1, 2, 3])
    r2 = eng.start("/generate", [4, 5, 6])
    assert eng.stats.running == 2
    assert abs(eng.itl_s(r1) - (0.002 + 0.002)) < 1e-9
    eng.finish(r1, 5)
    eng.finish(r1, 5)  # idempotent
    assert eng.stats.running == 1 and eng.stats.completion_tokens == 5
    eng.finish(r2, 1, aborted=True)
    assert eng.stats.running == 0 and eng.stats.aborted == 1 and eng.stats.completed == 1


def test_overrides_from_headers() -> None:
    h = {"x-sim-ttft-ms": "250", "x-sim-itl-ms": "bad", "x-sim-status": "429", "x-sim-stall-after": "3"}
    o = Overrides.from_headers(h.get)
    assert o.ttft_s == 0.25 and o.itl_s is None and o.status == 429 and o.stall_after == 3
    eng = SimEngine()
    req = eng.start("/v1/completions", ["a"], o)
    assert req.ttft_s == 0.25 and req.stall_after == 3
    f = eng.begin("/v1/completions", o)
    assert f is not None and f.kind == "error" and f.status == 429


def test_die_after_and_error_rate() -> None:
    eng = SimEngine(die_after=2)
    assert eng.begin("/generate") is None
    assert eng.begin("/generate") is None
    f = eng.begin("/generate")
    assert f is not None and f.kind == "die"
    eng2 = SimEngine(error_rate=1.0, error_status=502, retry_after_s=1.5)
    f2 = eng2.begin("/generate")
    assert f2 is not None and (f2.kind, f2.status, f2.retry_after_s) == ("error", 502, 1.5)
    eng3 = SimEngine(error_rate=0.5, seed=7)
    hits = sum(eng3.begin("/x") is not None for _ in range(400))
    assert 100 < hits < 300


def test_plan_output_deterministic_and_lengths() -> None:
    eng = SimEngine(output_tokens=5)
    seed = stable_hash("hello world")
    a = eng.plan_output(seed, None)
    assert a == SimEngine(output_tokens=5).plan_output(seed, None)
    assert len(a.token_ids) == 5 and a.finish_reason == "stop"
    assert all(p in WORDS for p in a.pieces)
    assert eng.plan_output(seed + 1, None).token_ids != a.token_ids
    b = eng.plan_output(seed, 9)
    assert len(b.pieces) == 9 and b.finish_reason == "length" and b.token_ids[:5] == a.token_ids
    assert all(WORD_ID_BASE <= t < WORD_ID_BASE + 64 for t in b.token_ids)


def test_plan_output_scripted_and_stop() -> None:
    eng = SimEngine()
    o = eng.plan_output(0, None, scripted="Paris is  the capital.\n")
    assert o.text == "Paris is  the capital.\n" and o.finish_reason == "stop" and len(o.pieces) == 4
    o2 = eng.plan_output(0, 2, scripted="Paris is the capital.")
    assert o2.text == "Paris is" and o2.finish_reason == "length"
    o3 = eng.plan_output(0, None, scripted="one two three four", stop=["ee f", "four"])
    assert o3.text == "one two thr" and o3.matched_stop == "ee f" and len(o3.token_ids) == 3
    ids = eng.plan_output(0, None, scripted="a b c d").token_ids
    o4 = eng.plan_output(0, None, scripted="a b c d", stop_token_ids=[ids[1]])
    assert o4.text == "a" and o4.matched_stop == ids[1] and len(o4.token_ids) == 2


@given(st.text(max_size=60))
def test_exact_pieces_roundtrip(text: str) -> None:
    assert "".join(exact_pieces(text)) == text


def test_text_helpers() -> None:
    assert count_tokens("a  b\nc") == 3
    assert count_tokens("") == 0
    chat1 = render_chat([{"role": "user", "content": "hi there"}])
    chat2 = render_chat(
        [
            {"role": "user", "content": "hi there"},
            {"role": "assistant", "content": [{"type": "text", "text": "yo"}]},
        ]
    )
    assert chat2.split()[: len(chat1.split()) - 1] == chat1.split()[:-1]


def test_embed_unit_and_deterministic() -> None:
    eng = SimEngine()
    v = eng.embed(stable_hash("x"), 32)
    assert len(v) == 32 and abs(sum(x * x for x in v) - 1.0) < 1e-9
    assert v == eng.embed(stable_hash("x"), 32) and v != eng.embed(stable_hash("y"), 32)
    assert SimEngine.relevance("red fox", "the red fox") == 1.0
    assert SimEngine.relevance("red fox", "blue dog") == 0.0
    p = eng.classify(3)
    assert len(p) == 2 and abs(sum(p) - 1.0) < 1e-9


def test_update_and_flush() -> None:
    eng = SimEngine(SimConfig(cache_blocks=4, block_size=2))
    eng.admit([1, 2, 3, 4])
    assert eng.admit([1, 2, 3, 4]).cached_tokens == 4
    eng.flush_cache()
    assert eng.admit([1, 2, 3, 4]).cached_tokens == 0
    eng.update(error_rate=0.25, retry_after_s=None, die_after=3, labels=["a", "b", "c"])
    assert eng.config.error_rate == 0.25 and eng.config.labels == ("a", "b", "c")
    for bad in ({"error_rate": "x"}, {"cache_blocks": 1.5}, {"healthy": 1}, {"die_after": True}, {"nope": 1}):
        with pytest.raises(TypeError):
            eng.update(**bad)
    assert eng.config.error_rate == 0.25
    snap = eng.snapshot()
    assert snap["cache_flushes"] == 1 and snap["cache_blocks_used"] == 2
    loads = eng.loads()
    assert loads["num_running_reqs"] == 0 and loads["max_total_num_tokens"] == 8
