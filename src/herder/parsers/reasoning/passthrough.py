"""``passthrough``: no reasoning extraction; every character is normal text, byte for byte."""

from __future__ import annotations

from herder.parsers.reasoning.base import (
    EMPTY_DELTA,
    MAX_BUFFER_SIZE,
    ReasoningBufferOverflow,
    ReasoningDelta,
    ReasoningParser,
    ReasoningResult,
)


class PassthroughParser(ReasoningParser):
    """Fallback for unknown models: returns the text unchanged (no trimming, tags kept)."""

    name = "passthrough"
    trim_whitespace = False

    def __init__(
        self,
        *,
        stream_reasoning: bool = True,
        starts_in_reasoning: bool | None = None,
        max_buffer_size: int = MAX_BUFFER_SIZE,
    ) -> None:
        # starts_in_reasoning is accepted (and ignored) so callers can pass the same options to any parser.
        super().__init__(stream_reasoning=stream_reasoning, max_buffer_size=max_buffer_size)

    @property
    def in_reasoning(self) -> bool:
        return False

    def mark_reasoning_started(self) -> None:
        """No-op: passthrough never separates reasoning."""

    def feed(self, chunk: str) -> ReasoningDelta:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        return ReasoningDelta("", chunk) if chunk else EMPTY_DELTA

    def finish(self) -> ReasoningDelta:
        self._finished = True
        return EMPTY_DELTA

    def parse(self, text: str) -> ReasoningResult:
        if len(text) > self.max_buffer_size:
            raise ReasoningBufferOverflow(len(text), self.max_buffer_size)
        return ReasoningResult("", text)

    def _clone(self) -> PassthroughParser:
        return PassthroughParser(stream_reasoning=self.stream_reasoning, max_buffer_size=self.max_buffer_size)
