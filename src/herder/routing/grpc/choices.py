"""The choices of one request (n per prompt, prompts of a batch side by side), fed by engine events.

Sans-I/O: `on_event(stream_no, event)` returns `(choice index, Delta, logprobs)` or None; the endpoint
modules turn those into chat chunks, completion chunks or SGLang objects. Usage is tallied here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from herder.routing.grpc.output import ChoiceOutput, Delta, OutputConfig, finish_reason
from herder.routing.grpc.runtimes import Chunk, Complete, GenerateEvent, Logprobs


@dataclass(slots=True)
class ChoiceEvent:
    """What one engine event did to one choice."""

    index: int
    delta: Delta
    logprobs: Logprobs | None
    finish_reason: str | None = None  # set when the choice is complete


class Choices:
    """Per-choice outputs plus usage for `prompts` backend requests of `n` choices each."""

    __slots__ = (
        "cached_tokens",
        "completion_tokens",
        "engine_reasons",
        "n",
        "output_ids",
        "outputs",
        "prompt_tokens",
        "stream",
        "token_counts",
    )

    def __init__(self, configs: list[OutputConfig], n: int, *, stream: bool) -> None:
        self.n = n
        self.stream = stream
        self.outputs = [ChoiceOutput(cfg) for cfg in configs for _ in range(n)]
        total = len(self.outputs)
        self.engine_reasons: list[str | None] = [None] * total
        self.completion_tokens = [0] * total
        self.token_counts = [0] * total
        self.output_ids: list[list[int]] = [[] for _ in range(total)]
        self.prompt_tokens = [0] * len(configs)
        self.cached_tokens = [0] * len(configs)

    def on_event(self, stream_no: int, event: GenerateEvent) -> ChoiceEvent | None:
        index = stream_no * self.n + event.index
        if index >= len(self.outputs) or event.index >= self.n:
            return None  # an index we did not ask for
        out = self.outputs[index]
        if isinstance(event, Chunk):
            self.prompt_tokens[stream_no] = event.prompt_tokens or self.prompt_tokens[stream_no]
            self.cached_tokens[stream_no] = event.cached_tokens or self.cached_tokens[stream_no]
            self.token_counts[index] += len(event.token_ids)
            self.output_ids[index].extend(event.token_ids)
            if out.finished or out.stopped:
                return None
            delta = out.feed(event.token_ids)
            if out.stopped:
                # The gateway's stop jail ended the choice before the engine did: finish it now.
                tail = out.finish()
                _merge(delta, tail)
                return ChoiceEvent(
                    index, delta, event.logprobs, finish_reason(self.engine_reasons[index] or "stop", out)
                )
            return (
                ChoiceEvent(index, delta, event.logprobs)
                if delta
                else (ChoiceEvent(index, delta, event.logprobs) if event.logprobs is not None else None)
            )
        assert isinstance(event, Complete)
        self.prompt_tokens[stream_no] = event.prompt_tokens or self.prompt_tokens[stream_no]
        self.cached_tokens[stream_no] = event.cached_tokens or self.cached_tokens[stream_no]
        self.completion_tokens[index] = event.completion_tokens
        self.engine_reasons[index] = event.finish_reason or "stop"
        if not self.stream:
            self.output_ids[index] = list(event.output_ids)
            self.token_counts[index] = len(event.output_ids)
        if out.finished:
            return None  # already ended by the gateway's stop jail (reported then)
        delta = Delta()
        logprobs = None
        if not self.stream:
            delta = out.feed(event.output_ids)
            logprobs = event.logprobs
        _merge(delta, out.finish())
        if out.matched is None and event.matched_stop is not None and isinstance(event.matched_stop, str):
            out.matched = event.matched_stop
        return ChoiceEvent(index, delta, logprobs, finish_reason(event.finish_reason, out))

    def finish_open(self) -> list[ChoiceEvent]:
        """Choices the engine never completed (early end): flush them with finish_reason stop/length."""
        events = []
        for index, out in enumerate(self.outputs):
            if not out.finished:
                delta = out.finish()
                events.append(
                    ChoiceEvent(index, delta, None, finish_reason(self.engine_reasons[index] or "stop", out))
                )
        return events

    @property
    def all_finished(self) -> bool:
        return all(out.finished for out in self.outputs)

    def matched(self, index: int) -> int | str | None:
        return self.outputs[index].matched

    def usage(self) -> dict[str, object]:
        prompt = sum(self.prompt_tokens)
        completion = sum(c or t for c, t in zip(self.completion_tokens, self.token_counts, strict=True))
        usage: dict[str, object] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        cached = sum(self.cached_tokens)
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return usage


def _merge(into: Delta, more: Delta) -> None:
    into.content += more.content
    into.reasoning += more.reasoning
    into.tools.extend(more.tools)
