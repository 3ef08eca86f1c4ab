"""herder.loadgen.workloads: reproducible per seed and shaped as configured."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herder.loadgen.workloads import WORKLOADS, BenchRequest, WorkloadConfig, make_workload


def _bodies(cfg: WorkloadConfig, n: int) -> list[bytes]:
    wl = make_workload(cfg)
    out = []
    for _ in range(n):
        req = wl.next()
        out.append(req.body)
        wl.complete(req, f"answer to {req.index}")
    return out


def _small(kind: str, **kw: Any) -> WorkloadConfig:
    base: dict[str, Any] = {"kind": kind, "model": "m", "prefix_words": 50, "groups": 3, "turns": 3}
    if kind == "long-context":
        base.update(input_min=300, input_max=400)  # keep the test light; the shape is the same
    base.update(kw)
    return WorkloadConfig(**base)


@pytest.mark.parametrize("kind", WORKLOADS)
def test_same_seed_same_requests_other_seed_differs(kind: str) -> None:
    a = _bodies(_small(kind, seed=7), 12)
    b = _bodies(_small(kind, seed=7), 12)
    c = _bodies(_small(kind, seed=8), 12)
    assert a == b
    assert a != c


@pytest.mark.parametrize("kind", WORKLOADS)
def test_common_fields_stream_and_extra_body(kind: str) -> None:
    cfg = _small(kind, max_tokens=33, stream=True, extra_body={"ignore_eos": True, "temperature": 0})
    req = make_workload(cfg).next()
    body = orjson.loads(req.body)
    assert req.path == "/v1/chat/completions" and req.stream
    assert body["model"] == "m" and body["max_tokens"] == 33 and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and body["temperature"] == 0
    no_stream = orjson.loads(make_workload(_small(kind, stream=False)).next().body)
    assert no_stream["stream"] is False and "stream_options" not in no_stream


@pytest.mark.parametrize("kind", WORKLOADS)
def test_completions_endpoint_sends_prompt(kind: str) -> None:
    req = make_workload(_small(kind, endpoint="completions")).next()
    body = orjson.loads(req.body)
    assert req.path == "/v1/completions"
    assert isinstance(body["prompt"], str) and body["prompt"] and "messages" not in body


@settings(max_examples=25, deadline=None)
@given(lo=st.integers(1, 60), extra=st.integers(0, 60), seed=st.integers(0, 2**32))
def test_random_lengths_within_range(lo: int, extra: int, seed: int) -> None:
    wl = make_workload(WorkloadConfig(kind="random", seed=seed, input_min=lo, input_max=lo + extra))
    for _ in range(10):
        req = wl.next()
        text = orjson.loads(req.body)["messages"][0]["content"]
        assert lo <= len(text.split()) <= lo + extra
        assert req.prompt_words == len(text.split())


def test_random_prompts_are_distinct() -> None:
    wl = make_workload(WorkloadConfig(kind="random", input_min=20, input_max=30))
    texts = [orjson.loads(wl.next().body)["messages"][0]["content"] for _ in range(50)]
    assert len(set(texts)) == 50


def test_shared_prefix_groups_and_suffixes() -> None:
    cfg = WorkloadConfig(kind="shared-prefix", groups=4, prefix_words=200, input_min=5, input_max=9, seed=3)
    wl = make_workload(cfg)
    systems: dict[int, str] = {}
    users = []
    for _ in range(200):
        req = wl.next()
        msgs = orjson.loads(req.body)["messages"]
        assert [m["role"] for m in msgs] == ["system", "user"]
        assert req.group is not None
        # One system prompt per group, always the same for that group.
        assert systems.setdefault(req.group, msgs[0]["content"]) == msgs[0]["content"]
        assert len(msgs[0]["content"].split()) == 200 + 4
        assert 5 <= len(msgs[1]["content"].split()) <= 9
        assert req.prompt_words == len(msgs[0]["content"].split()) + len(msgs[1]["content"].split())
        users.append(msgs[1]["content"])
    assert sorted(systems) == [0, 1, 2, 3]
    assert len(set(systems.values())) == 4
    assert len(set(users)) > 190  # unique suffixes (short random word strings may rarely repeat)


def _messages(req: BenchRequest) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = orjson.loads(req.body)["messages"]
    return msgs


def test_multi_turn_conversations_grow_with_answers() -> None:
    wl = make_workload(WorkloadConfig(kind="multi-turn", turns=3, input_min=4, input_max=6))
    first = wl.next()
    assert (first.conversation, first.turn) == (0, 0)
    assert [m["role"] for m in _messages(first)] == ["user"]
    # While conversation 0 awaits its answer, the next request starts conversation 1.
    other = wl.next()
    assert (other.conversation, other.turn) == (1, 0)
    wl.complete(first, "first answer")
    second = wl.next()
    assert (second.conversation, second.turn) == (0, 1)
    msgs = _messages(second)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0] == _messages(first)[0] and msgs[1]["content"] == "first answer"
    assert second.prompt_words > first.prompt_words
    wl.complete(second, "second answer")
    third = wl.next()
    assert (third.conversation, third.turn) == (0, 2)
    assert [m["content"] for m in _messages(third)[:4]] == [
        msgs[0]["content"],
        "first answer",
        msgs[2]["content"],
        "second answer",
    ]
    wl.complete(third, "done")
    # Conversation 0 has had its 3 turns; the next request is a new conversation.
    assert wl.next().conversation == 2


def test_multi_turn_failure_ends_conversation() -> None:
    wl = make_workload(WorkloadConfig(kind="multi-turn", turns=5))
    req = wl.next()
    wl.complete(req, None)
    nxt = wl.next()
    assert nxt.conversation == 1 and nxt.turn == 0


def test_multi_turn_completions_prompt_carries_history() -> None:
    wl = make_workload(WorkloadConfig(kind="multi-turn", endpoint="completions", turns=2))
    req = wl.next()
    wl.complete(req, "the reply")
    prompt = orjson.loads(wl.next().body)["prompt"]
    assert "Assistant: the reply" in prompt and prompt.endswith("Assistant:")


def test_multi_turn_turn_prompts_do_not_depend_on_answers() -> None:
    # The user part of each turn comes from (seed, conversation, turn) only.
    def user_turns(answer: str) -> list[str]:
        wl = make_workload(WorkloadConfig(kind="multi-turn", turns=3, seed=11))
        out = []
        for _ in range(3):
            req = wl.next()
            out.append(_messages(req)[-1]["content"])
            wl.complete(req, answer)
        return out

    assert user_turns("short") == user_turns("a much longer answer than before")


def test_long_context_default_is_long() -> None:
    req = make_workload(WorkloadConfig(kind="long-context", seed=1)).next()
    text = orjson.loads(req.body)["messages"][0]["content"]
    assert 8000 <= len(text.split()) - 8 <= 16000
    assert text.endswith("Summarize the text above in a few sentences.")


@pytest.mark.parametrize(
    "kw",
    [
        {"kind": "nope"},
        {"endpoint": "embeddings"},
        {"input_min": 0},
        {"input_min": 10, "input_max": 5},
        {"max_tokens": 0},
        {"groups": 0},
        {"turns": 0},
    ],
)
def test_invalid_configs_rejected(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_workload(WorkloadConfig(**kw))
