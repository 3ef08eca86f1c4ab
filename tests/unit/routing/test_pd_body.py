"""PD body rewriting and the logprob merge (sans-I/O)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herder.routing.pd_body import (
    LogprobStreamMerger,
    inject_bootstrap,
    item_count,
    merge_json,
    prefill_logprobs,
    vllm_decode_body,
    vllm_kv_params,
    vllm_prefill_body,
    wants_logprobs,
)


@pytest.mark.parametrize(
    ("endpoint", "body", "count"),
    [
        ("generate", {"text": "a"}, None),
        ("generate", {"text": ["a", "b", "c"]}, 3),
        ("generate", {"input_ids": [1, 2, 3]}, None),
        ("generate", {"input_ids": [[1], [2]]}, 2),
        ("generate", {"text": "a", "sampling_params": {"n": 3}}, 3),
        ("generate", {"text": ["a", "b"], "sampling_params": {"n": 2}}, 4),
        ("chat", {"messages": [], "n": 1}, None),
        ("chat", {"messages": [], "n": 4}, 4),
        ("chat", {"messages": [], "n": True}, None),
        ("completions", {"prompt": "x"}, None),
        ("completions", {"prompt": [1, 2, 3]}, None),
        ("completions", {"prompt": ["x", "y"]}, 2),
        ("completions", {"prompt": [[1, 2], [3]], "n": 2}, 4),
    ],
)
def test_item_count(endpoint: str, body: dict[str, Any], count: int | None) -> None:
    assert item_count(endpoint, body) == count


def test_inject_scalar_bootstrap() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    raw, rooms = inject_bootstrap("chat", body, "10.0.0.1", 8998)
    out = orjson.loads(raw)
    assert out["bootstrap_host"] == "10.0.0.1" and out["bootstrap_port"] == 8998
    assert [out["bootstrap_room"]] == rooms and 0 <= rooms[0] < 2**63
    assert out["messages"] == body["messages"] and "bootstrap_room" not in body  # the input is not mutated


def test_inject_batch_gives_fresh_rooms_and_null_port() -> None:
    raw, rooms = inject_bootstrap("generate", {"text": ["a", "b"], "sampling_params": {"n": 3}}, "h", None)
    out = orjson.loads(raw)
    assert out["bootstrap_host"] == ["h"] * 6 and out["bootstrap_port"] == [None] * 6
    assert out["bootstrap_room"] == rooms and len(set(rooms)) == 6


def test_rooms_cover_the_63_bit_range() -> None:
    rooms = [inject_bootstrap("chat", {}, "h", 1)[1][0] for _ in range(2000)]
    assert all(0 <= r < 2**63 for r in rooms)
    assert max(rooms) > 2**62  # not a 32-bit or 53-bit generator
    assert len(set(rooms)) == len(rooms)


@pytest.mark.parametrize(
    ("endpoint", "body", "wanted"),
    [
        ("generate", {"return_logprob": True}, True),
        ("generate", {"logprobs": True}, False),
        ("chat", {"logprobs": True}, True),
        ("chat", {"logprobs": False}, False),
        ("completions", {"logprobs": 0}, True),
        ("completions", {}, False),
    ],
)
def test_wants_logprobs(endpoint: str, body: dict[str, Any], wanted: bool) -> None:
    assert wants_logprobs(endpoint, body) is wanted


def test_vllm_prefill_body() -> None:
    body = {
        "model": "m",
        "prompt": "p",
        "max_tokens": 50,
        "n": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = orjson.loads(vllm_prefill_body("completions", body))
    assert out["max_tokens"] == 1 and out["n"] == 1 and out["stream"] is False and "stream_options" not in out
    assert out["kv_transfer_params"]["do_remote_decode"] is True
    assert out["kv_transfer_params"]["do_remote_prefill"] is False
    chat = orjson.loads(vllm_prefill_body("chat", {"messages": [], "max_completion_tokens": 9}))
    assert chat["max_completion_tokens"] == 1 and chat["max_tokens"] == 1
    gen = orjson.loads(vllm_prefill_body("generate", {"text": "t", "sampling_params": {"max_new_tokens": 7}}))
    assert gen["sampling_params"] == {"max_new_tokens": 1, "n": 1}
    assert body["max_tokens"] == 50  # not mutated


def test_vllm_kv_params_relay() -> None:
    params = {"do_remote_prefill": True, "remote_engine_id": "e", "remote_block_ids": [1, 2]}
    assert vllm_kv_params(orjson.dumps({"id": "x", "kv_transfer_params": params})) == params
    assert vllm_kv_params(orjson.dumps({"choices": [{"kv_transfer_params": params}]})) == params
    assert vllm_kv_params(b"{}") is None
    assert vllm_kv_params(b"not json") is None
    assert vllm_kv_params(b"[1]") is None
    out = orjson.loads(vllm_decode_body({"prompt": "p", "max_tokens": 5}, params))
    assert out == {"prompt": "p", "max_tokens": 5, "kv_transfer_params": params}


def _gen(index: int | None, lp: list[Any] | None, text: str = "t") -> dict[str, Any]:
    meta: dict[str, Any] = {"id": "r"}
    if lp is not None:
        meta["input_token_logprobs"] = lp
    item: dict[str, Any] = {"text": text, "meta_info": meta}
    if index is not None:
        item["index"] = index
    return item


def test_merge_json_object_and_batch() -> None:
    prefill = {0: [[None, 1, None], [-0.5, 2, None]], 1: [[None, 7, None]]}
    single = merge_json(orjson.dumps(_gen(None, [[-0.25, 3, None]])), prefill)
    assert orjson.loads(single)["meta_info"]["input_token_logprobs"] == [*prefill[0], [-0.25, 3, None]]
    batch = orjson.loads(merge_json(orjson.dumps([_gen(None, [[-1, 3, None]]), _gen(None, [])]), prefill))
    assert batch[0]["meta_info"]["input_token_logprobs"] == [*prefill[0], [-1, 3, None]]
    assert batch[1]["meta_info"]["input_token_logprobs"] == prefill[1]
    untouched = orjson.dumps({"choices": [{"text": "x"}]})
    assert merge_json(untouched, prefill) == untouched
    assert merge_json(b"{bad", prefill) == b"{bad"


def test_prefill_logprobs_from_json_and_sse() -> None:
    assert prefill_logprobs(orjson.dumps(_gen(None, [[None, 1, None]])), False) == {0: [[None, 1, None]]}
    assert prefill_logprobs(orjson.dumps([_gen(None, [1]), _gen(None, None), _gen(None, [3])]), False) == {
        0: [1],
        2: [3],
    }
    sse = b"".join(
        b"data: " + orjson.dumps(e) + b"\n\n" for e in (_gen(0, [1]), _gen(1, [2]), _gen(1, [2, 2]))
    )
    assert prefill_logprobs(sse + b"data: [DONE]\n\n", True) == {0: [1], 1: [2, 2]}
    assert prefill_logprobs(b"garbage", False) == {}


def _stream(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


EVENTS = [
    _gen(0, [[-1.0, 5, None]], "a"),
    _gen(1, [[-2.0, 6, None]], "b"),
    _gen(0, None, "c"),
    {"error": {"message": "x"}},
    _gen(1, [[-3.0, 8, None]], "d \\n\n e"),
]
PREFILL = {0: [[None, 1, None]], 1: [[None, 2, None], [-0.1, 3, None]]}


def _expected() -> bytes:
    out = []
    for e in EVENTS:
        e = orjson.loads(orjson.dumps(e))
        lp = e.get("meta_info", {}).get("input_token_logprobs")
        if lp is not None:
            e["meta_info"]["input_token_logprobs"] = PREFILL[e.get("index", 0)] + lp
        out.append(e)
    return _stream(out)


def test_stream_merge_whole() -> None:
    merger = LogprobStreamMerger(PREFILL)
    assert merger.feed(_stream(EVENTS)) + merger.finish() == _expected()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(_stream(EVENTS))), max_size=12))
def test_stream_merge_is_independent_of_chunking(cuts: list[int]) -> None:
    data = _stream(EVENTS)
    bounds = [0, *sorted(cuts), len(data)]
    merger = LogprobStreamMerger(PREFILL)
    out = b"".join(merger.feed(data[a:b]) for a, b in itertools.pairwise(bounds)) + merger.finish()
    assert out == _expected()


def test_stream_without_logprobs_passes_through() -> None:
    merger = LogprobStreamMerger(PREFILL)
    data = b'data: {"text":"x"}\n\ndata: [DONE]\n\n'
    assert merger.feed(data[:7]) == b""
    assert merger.feed(data[7:]) == data
    assert merger.finish() == b""
    tail = LogprobStreamMerger({})
    assert tail.feed(b"data: partial") == b"" and tail.finish() == b"data: partial"
