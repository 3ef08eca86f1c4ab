"""Per-choice output processing (sans-I/O): token ids -> text deltas -> reasoning / content / tool calls.

`ChoiceOutput.feed(ids)` runs the incremental detokenizer and the stop jail (`OutputDecoder`), then the
reasoning parser (when `separate_reasoning`) and the tool parser (when tools are present) on the released
text, and returns one `Delta`. `finish()` flushes whatever every stage still holds. Streaming and
non-streaming responses use the same object, so they cannot disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from herder.parsers.reasoning import ReasoningParser, get_reasoning_parser
from herder.parsers.tools import ToolParser
from herder.parsers.tools.registry import get_tool_parser
from herder.routing.grpc.runtimes import Logprobs
from herder.tokenization import OutputDecoder, Tokenizer


def tool_call_id() -> str:
    """OpenAI-style tool call id: `call_` + 24 hex characters."""
    return "call_" + os.urandom(12).hex()


@dataclass(slots=True)
class ToolDelta:
    """One streamed piece of tool call `index`: `id` and `name` on the first piece only."""

    index: int
    id: str | None
    name: str | None
    arguments: str

    def json(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": self.arguments}
        if self.name is not None:
            fn["name"] = self.name
        out: dict[str, Any] = {"index": self.index, "function": fn}
        if self.id is not None:
            out["id"] = self.id
            out["type"] = "function"
        return out


@dataclass(slots=True)
class Delta:
    """What one feed/finish released for a choice."""

    content: str = ""
    reasoning: str = ""
    tools: list[ToolDelta] = field(default_factory=list)
    stopped: bool = False
    matched: int | str | None = None

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tools)


@dataclass(slots=True)
class OutputConfig:
    """How a request's choices are decoded (shared by all its choices)."""

    tokenizer: Tokenizer
    skip_special_tokens: bool = True
    stop: Sequence[str] = ()
    stop_token_ids: Sequence[int] = ()  # hidden: EOS and the request's stop_token_ids
    no_stop_trim: bool = False
    reasoning_parser: str | None = None  # set only when separate_reasoning applies
    stream_reasoning: bool = True
    reasoning_started: bool = False  # the prompt ends inside an opened reasoning block
    tool_parser: str | None = None  # set only when tools are present and tool_choice is auto
    tools: list[dict[str, Any]] | None = None
    forced_tool: str | None = None  # tool_choice names a function: the output is its arguments
    required_tools: bool = False  # tool_choice "required": the output is a JSON array of calls
    parallel_tool_calls: bool = True


class ChoiceOutput:
    """Decoding state of one choice."""

    __slots__ = (
        "_buffer_tools",
        "_decoder",
        "_ids",
        "_reasoning",
        "_tool_ids",
        "_tool_names",
        "_tools",
        "cfg",
        "content",
        "finished",
        "matched",
        "reasoning",
        "tool_calls",
    )

    def __init__(self, cfg: OutputConfig) -> None:
        self.cfg = cfg
        self._decoder = OutputDecoder.create(
            cfg.tokenizer, skip_special_tokens=cfg.skip_special_tokens, stop=cfg.stop,
            stop_token_ids=cfg.stop_token_ids, no_stop_trim=cfg.no_stop_trim,
        )  # fmt: skip
        self._reasoning: ReasoningParser | None = None
        if cfg.reasoning_parser is not None:
            self._reasoning = get_reasoning_parser(
                cfg.reasoning_parser, stream_reasoning=cfg.stream_reasoning
            )
            if cfg.reasoning_started:
                self._reasoning.mark_reasoning_started()
        self._tools: ToolParser | None = (
            get_tool_parser(cfg.tool_parser, cfg.tools) if cfg.tool_parser else None
        )
        # tool_choice required / named: the constrained output is collected and turned into calls at the end.
        self._buffer_tools = cfg.forced_tool is not None or cfg.required_tools
        self._tool_ids: dict[int, str] = {}
        self._tool_names: dict[int, str] = {}
        self._ids: list[int] = []
        self.finished = False
        self.matched: int | str | None = None
        # Aggregates (non-streaming responses read these).
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, list[str]] = {}

    @property
    def stopped(self) -> bool:
        """The gateway's stop jail ended this choice (stop string or stop token)."""
        return self._decoder.stops.stopped

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._tool_names)

    def feed(self, token_ids: Sequence[int]) -> Delta:
        if self.finished or self._decoder.stops.stopped:
            return Delta(stopped=True, matched=self.matched)
        r = self._decoder.feed(token_ids)
        delta = self._text(r.text, final=False)
        if r.stopped:
            self.matched = r.matched
            delta.stopped, delta.matched = True, r.matched
        return delta

    def finish(self) -> Delta:
        """Flush every stage (idempotent)."""
        if self.finished:
            return Delta()
        self.finished = True
        r = self._decoder.finish()
        return self._text(r.text, final=True)

    def _text(self, text: str, *, final: bool) -> Delta:
        delta = Delta()
        content = text
        rp = self._reasoning
        if rp is not None:
            rd = rp.feed(text) if text else None
            reasoning = rd.reasoning_text if rd else ""
            content = rd.normal_text if rd else ""
            if final:
                fd = rp.finish()
                reasoning += fd.reasoning_text
                content += fd.normal_text
            if reasoning:
                delta.reasoning = reasoning
                self.reasoning.append(reasoning)
        if self._buffer_tools:
            if content:
                self.content.append(content)
            if final:
                self._forced_calls(delta)
            return delta
        tp = self._tools
        if tp is not None:
            td = tp.feed(content) if content else None
            content = td.normal_text if td else ""
            calls = list(td.calls) if td else []
            if final:
                fd2 = tp.finish()
                content += fd2.normal_text
                calls.extend(fd2.calls)
            for call in calls:
                self._add_tool(delta, call.index, call.name, call.arguments_delta)
        if content:
            delta.content = content
            self.content.append(content)
        return delta

    def _add_tool(self, delta: Delta, index: int, name: str | None, args: str) -> None:
        if index > 0 and not self.cfg.parallel_tool_calls:
            return  # parallel_tool_calls=false: only the first call is returned
        first = index not in self._tool_ids
        if first:
            self._tool_ids[index] = tool_call_id()
            self._tool_names[index] = name or ""
            self.tool_calls[index] = []
        if args:
            self.tool_calls[index].append(args)
        if not first and not args:
            return
        delta.tools.append(
            ToolDelta(
                index,
                self._tool_ids[index] if first else None,
                self._tool_names[index] if first else None,
                args,
            )
        )

    def _forced_calls(self, delta: Delta) -> None:
        """tool_choice required / named: the whole (constrained) output becomes tool calls."""
        text = "".join(self.content).strip()
        self.content = []
        if self.cfg.forced_tool is not None:
            self._add_tool(delta, 0, self.cfg.forced_tool, text or "{}")
            return
        try:
            calls = json.loads(text)
        except ValueError:
            calls = None
        if not isinstance(calls, list):
            delta.content = text  # not the constrained shape (engine without constraints): return as text
            self.content.append(text)
            return
        index = 0
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                continue
            args = call.get("parameters", call.get("arguments", {}))
            args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            self._add_tool(delta, index, call["name"], args_text)
            index += 1

    # -- aggregates ----------------------------------------------------------------------------------
    def message_tool_calls(self) -> list[dict[str, Any]]:
        return [
            {"id": self._tool_ids[i], "type": "function",
             "function": {"name": self._tool_names[i], "arguments": "".join(self.tool_calls[i])}}
            for i in sorted(self._tool_ids)
        ]  # fmt: skip


def finish_reason(engine_reason: str, out: ChoiceOutput) -> str:
    """OpenAI finish_reason: the gateway's own stop wins, tool calls say so, else the engine's reason."""
    if out.has_tool_calls and engine_reason in ("stop", ""):
        return "tool_calls"
    if out.stopped:
        return "stop"
    return engine_reason or "stop"


class TokenTexts:
    """Token id -> its text (for logprobs), cached per tokenizer."""

    __slots__ = ("_cache", "_tok")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, tid: int) -> str:
        text = self._cache.get(tid)
        if text is None:
            text = self._cache[tid] = self._tok.decode([tid], skip_special_tokens=False)
        return text


def chat_logprobs(lp: Logprobs | None, texts: TokenTexts) -> dict[str, Any] | None:
    """OpenAI chat `logprobs.content` entries for a run of positions."""
    if lp is None:
        return None
    content = []
    for i, tid in enumerate(lp.token_ids):
        token = texts(tid)
        top = lp.top[i] if i < len(lp.top) else []
        content.append({
            "token": token, "logprob": lp.logprobs[i], "bytes": list(token.encode("utf-8")),
            "top_logprobs": [{"token": texts(t), "logprob": v, "bytes": list(texts(t).encode("utf-8"))}
                             for t, v in top],
        })  # fmt: skip
    return {"content": content}


def completion_logprobs(lp: Logprobs | None, texts: TokenTexts, offset: int = 0) -> dict[str, Any] | None:
    """OpenAI (legacy) completions `logprobs` object for a run of positions."""
    if lp is None:
        return None
    tokens = [texts(t) for t in lp.token_ids]
    offsets = []
    pos = offset
    for token in tokens:
        offsets.append(pos)
        pos += len(token)
    top = [{texts(t): v for t, v in alts} for alts in lp.top] if lp.top else None
    return {
        "tokens": tokens,
        "token_logprobs": list(lp.logprobs),
        "top_logprobs": top,
        "text_offset": offsets,
    }
