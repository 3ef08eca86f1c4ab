"""Seeded, reproducible request generators for `herder bench`.

Every workload turns a `WorkloadConfig` into a sequence of `BenchRequest`s (ready-to-send JSON bodies).
Prompt text is drawn from a fixed English vocabulary with a random generator seeded from
(seed, workload, request/group/conversation index), so the same seed gives the same prompts regardless of
concurrency or timing. Lengths are in words (roughly 1.3 tokens each for typical BPE tokenizers).

* `random`: independent prompts of `input_min..input_max` words.
* `shared-prefix`: `groups` system prompts of `prefix_words` words; each request picks a group and adds a
  unique user suffix of `input_min..input_max` words (exercises prefix caches and cache-aware routing).
* `multi-turn`: conversations of `turns` turns; each next request of a conversation carries all previous
  turns and the previous assistant answer, so prompts grow. The runner reports each answer with
  `complete(req, answer)`; follow-up turns are issued before new conversations are started.
* `long-context`: very long prompts (default 8000..16000 words) followed by a short question.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "ENDPOINTS",
    "WORKLOADS",
    "BenchRequest",
    "Workload",
    "WorkloadConfig",
    "make_workload",
    "words",
]

ENDPOINTS: dict[str, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
WORKLOADS: tuple[str, ...] = ("random", "shared-prefix", "multi-turn", "long-context")

# Default length range (words) of the unique part of each prompt, per workload.
_DEFAULT_INPUT: dict[str, tuple[int, int]] = {
    "random": (64, 512),
    "shared-prefix": (16, 64),
    "multi-turn": (32, 128),
    "long-context": (8000, 16000),
}

# Common English words; prompts are drawn from these so tokenizers see ordinary text.
_VOCAB_TEXT = """
    the of and to in is that for it as was with be by on not he this are or his from at which but have an
    they you were her she there been one all we their has would when if so no will more about can other said
    what up out them into time only some could new these two may first then do any like my now over such our
    man me even most made after also did many before must through back years where much your way well down
    should because each just those people how too little state good very make world still own see men work
    long get here between both life being under never day same another know while last might us great old
    year off come since against go came right used take three system house water river city garden market
    light music story paper window engine valley forest signal harbor bridge letter number question answer
    reason energy metal island winter summer morning evening mountain station village kitchen library planet
    ocean desert cloud thunder silver golden yellow purple orange simple gentle quiet rapid brave careful
    clever honest modern ancient distant narrow shallow heavy bright dark warm cold fresh sudden steady
    build carry follow listen measure notice explain compare gather prepare remember travel wonder report
"""
_VOCAB: tuple[str, ...] = tuple(_VOCAB_TEXT.split())


def words(rng: random.Random, n: int) -> str:
    """`n` words drawn from the vocabulary with `rng`."""
    return " ".join(rng.choices(_VOCAB, k=n))


def _rng(seed: int, *parts: object) -> random.Random:
    # String seeds hash with SHA-512 inside `random`, independent of PYTHONHASHSEED: stable across runs.
    return random.Random(":".join([str(seed), *map(str, parts)]))


@dataclass(slots=True)
class WorkloadConfig:
    """What to send. Lengths are in words; `None` input bounds take the workload's default."""

    kind: str = "random"
    endpoint: str = "chat"
    model: str = ""
    max_tokens: int = 128
    stream: bool = True
    seed: int = 0
    input_min: int | None = None
    input_max: int | None = None
    groups: int = 8
    prefix_words: int = 1024
    turns: int = 4
    extra_body: dict[str, Any] = field(default_factory=dict)

    def input_range(self) -> tuple[int, int]:
        """The effective (min, max) words of each prompt's unique part."""
        lo, hi = _DEFAULT_INPUT.get(self.kind, (64, 512))
        if self.input_min is not None:
            lo = self.input_min
            hi = max(hi, lo)  # only a minimum given: the default maximum stretches to it
        if self.input_max is not None:
            hi = self.input_max
            if self.input_min is None:
                lo = min(lo, hi)  # only a maximum given: the default minimum shrinks to it
        return lo, hi

    def validate(self) -> None:
        """Raise ValueError on settings that cannot produce requests."""
        if self.kind not in WORKLOADS:
            raise ValueError(f"unknown workload {self.kind!r}; choose one of {', '.join(WORKLOADS)}")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; choose one of {', '.join(ENDPOINTS)}")
        lo, hi = self.input_range()
        if lo < 1 or hi < lo:
            raise ValueError(f"bad input length range {lo}..{hi} (words)")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.groups < 1 or self.prefix_words < 0 or self.turns < 1:
            raise ValueError("groups and turns must be >= 1, prefix_words >= 0")


@dataclass(slots=True)
class BenchRequest:
    """One request to send: endpoint path and serialized JSON body, plus what shaped it."""

    index: int
    path: str
    body: bytes
    stream: bool
    prompt_words: int
    group: int | None = None
    conversation: int | None = None
    turn: int = 0


class Workload:
    """Base class: `next()` returns the next request; `complete()` reports its answer (None = failed)."""

    def __init__(self, cfg: WorkloadConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.path = ENDPOINTS[cfg.endpoint]
        self._index = 0
        base: dict[str, Any] = {"model": cfg.model, "max_tokens": cfg.max_tokens, "stream": cfg.stream}
        if cfg.stream:
            base["stream_options"] = {"include_usage": True}
        base.update(cfg.extra_body)
        self._base = base

    def next(self) -> BenchRequest:
        raise NotImplementedError

    def complete(self, req: BenchRequest, answer: str | None) -> None:
        """Record a finished request (only multi-turn needs it)."""
        return None

    # -- helpers ---------------------------------------------------------------------------------------------
    def _take_index(self) -> int:
        i = self._index
        self._index += 1
        return i

    def _body(self, messages: list[dict[str, str]]) -> bytes:
        body = dict(self._base)
        if self.cfg.endpoint == "chat":
            body["messages"] = messages
        else:
            body["prompt"] = _as_prompt(messages)
        return orjson.dumps(body)

    def _length(self, rng: random.Random) -> int:
        lo, hi = self.cfg.input_range()
        return rng.randint(lo, hi)


def _as_prompt(messages: list[dict[str, str]]) -> str:
    """Plain-text rendering of a conversation for the completions endpoint."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    lines = []
    for m in messages:
        role = m["role"]
        if role == "system":
            lines.append(m["content"] + "\n")
        else:
            lines.append(f"{role.capitalize()}: {m['content']}")
    lines.append("Assistant:")
    return "\n".join(lines)


class RandomWorkload(Workload):
    """Independent prompts of random length."""

    def next(self) -> BenchRequest:
        i = self._take_index()
        rng = _rng(self.cfg.seed, "random", i)
        n = self._length(rng)
        body = self._body([{"role": "user", "content": words(rng, n)}])
        return BenchRequest(i, self.path, body, self.cfg.stream, n)


class LongContextWorkload(Workload):
    """Very long prompts followed by a short question."""

    def next(self) -> BenchRequest:
        i = self._take_index()
        rng = _rng(self.cfg.seed, "long-context", i)
        n = self._length(rng)
        text = words(rng, n) + "\n\nSummarize the text above in a few sentences."
        body = self._body([{"role": "user", "content": text}])
        return BenchRequest(i, self.path, body, self.cfg.stream, n + 8)


class SharedPrefixWorkload(Workload):
    """G long system prompts shared by many requests, each with a unique user suffix."""

    def __init__(self, cfg: WorkloadConfig) -> None:
        super().__init__(cfg)
        self.prefixes = [
            f"You are assistant {g}. " + words(_rng(cfg.seed, "prefix", g), cfg.prefix_words)
            for g in range(cfg.groups)
        ]

    def next(self) -> BenchRequest:
        i = self._take_index()
        rng = _rng(self.cfg.seed, "shared-prefix", i)
        g = rng.randrange(self.cfg.groups)
        n = self._length(rng)
        messages = [
            {"role": "system", "content": self.prefixes[g]},
            {"role": "user", "content": words(rng, n)},
        ]
        prompt_words = n + self.cfg.prefix_words + 4  # + "You are assistant {g}."
        return BenchRequest(i, self.path, self._body(messages), self.cfg.stream, prompt_words, group=g)


@dataclass(slots=True)
class _Conversation:
    id: int
    turn: int = 0  # turns already sent
    messages: list[dict[str, str]] = field(default_factory=list)
    words: int = 0


class MultiTurnWorkload(Workload):
    """Growing conversations: turn t+1 carries turns 0..t and their answers.

    Follow-up turns whose previous answer arrived are sent first; when none is ready a new conversation
    starts, so about `concurrency` conversations are in flight. A failed turn ends its conversation.
    """

    def __init__(self, cfg: WorkloadConfig) -> None:
        super().__init__(cfg)
        self._ready: deque[_Conversation] = deque()
        self._active: dict[int, _Conversation] = {}
        self._next_conv = 0

    def next(self) -> BenchRequest:
        if self._ready:
            conv = self._ready.popleft()
        else:
            conv = _Conversation(self._next_conv)
            self._next_conv += 1
        self._active[conv.id] = conv
        rng = _rng(self.cfg.seed, "multi-turn", conv.id, conv.turn)
        n = self._length(rng)
        conv.messages.append({"role": "user", "content": words(rng, n)})
        conv.words += n
        turn = conv.turn
        conv.turn += 1
        i = self._take_index()
        body = self._body(conv.messages)
        return BenchRequest(i, self.path, body, self.cfg.stream, conv.words, conversation=conv.id, turn=turn)

    def complete(self, req: BenchRequest, answer: str | None) -> None:
        if req.conversation is None:
            return
        conv = self._active.pop(req.conversation, None)
        if conv is None or answer is None:
            return
        conv.messages.append({"role": "assistant", "content": answer})
        conv.words += len(answer.split())
        if conv.turn < self.cfg.turns:
            self._ready.append(conv)

    @property
    def conversations_started(self) -> int:
        return self._next_conv


_KINDS: dict[str, type[Workload]] = {
    "random": RandomWorkload,
    "shared-prefix": SharedPrefixWorkload,
    "multi-turn": MultiTurnWorkload,
    "long-context": LongContextWorkload,
}


def make_workload(cfg: WorkloadConfig) -> Workload:
    """Build the workload named by `cfg.kind` (raises ValueError on bad settings)."""
    cfg.validate()
    return _KINDS[cfg.kind](cfg)
