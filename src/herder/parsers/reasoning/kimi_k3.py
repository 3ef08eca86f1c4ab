"""Kimi-K3 reasoning parser for the XTML channel format.

K3 frames its output in channels built from the special tokens ``<|open|>``, ``<|close|>`` and
``<|sep|>``: ``<|open|>think<|sep|>`` … ``<|close|>think<|sep|>`` holds the reasoning,
``<|open|>response<|sep|>`` … ``<|close|>response<|sep|>`` the answer, ``<|open|>tools<|sep|>`` …
the tool calls, and ``<|open|>message<|sep|>`` … ``<|close|>message<|sep|>`` wraps the whole turn.

What this parser does (after SMG's ``kimi_k3``):

* The ``think`` channel becomes ``reasoning_text``; its open/close markers are removed.
* ``response`` and ``message`` wrapper markers are removed from the normal text.
* The ``tools`` channel is left verbatim in the normal text for the ``kimi_k3`` tool parser.
* Reasoning also ends at a sibling *opener* (``response`` or ``tools``): a forced tool call can jump
  from a prefilled think channel straight into ``tools``.
* When the think channel was only *assumed* (``mark_reasoning_started()``, prompt prefilled
  ``<|open|>think<|sep|>``) a ``response``/``message`` *closer* also ends it. Unlike SMG's one-shot
  path we do not re-label the text already read as the answer: a stream cannot take back emitted
  reasoning deltas, and one-shot must equal streaming.
* A stray ``<|close|>think<|sep|>`` outside reasoning is dropped; whitespace before the think channel
  opens is dropped. Markers must be spelled exactly (no whitespace inside), as the tokenizer emits them.
* No whitespace trimming: XTML content is delimited by special tokens, not by newlines.
"""

from __future__ import annotations

from herder.parsers.reasoning.base import MAX_BUFFER_SIZE, MarkerSet, ReasoningParser

THINK_OPEN = "<|open|>think<|sep|>"
THINK_CLOSE = "<|close|>think<|sep|>"
RESPONSE_OPEN = "<|open|>response<|sep|>"
RESPONSE_CLOSE = "<|close|>response<|sep|>"
MESSAGE_OPEN = "<|open|>message<|sep|>"
MESSAGE_CLOSE = "<|close|>message<|sep|>"
TOOLS_OPEN = "<|open|>tools<|sep|>"

_PRE, _REASON, _CONTENT = 0, 1, 2

_PRE_MARKERS = MarkerSet(
    (THINK_OPEN, THINK_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE, MESSAGE_OPEN, MESSAGE_CLOSE, TOOLS_OPEN)
)
_OBSERVED_MARKERS = MarkerSet((THINK_CLOSE, RESPONSE_OPEN, TOOLS_OPEN))
_ASSUMED_MARKERS = MarkerSet((THINK_CLOSE, RESPONSE_OPEN, TOOLS_OPEN, RESPONSE_CLOSE, MESSAGE_CLOSE))
_ASSUMED_FRESH_MARKERS = MarkerSet(
    (THINK_CLOSE, RESPONSE_OPEN, TOOLS_OPEN, RESPONSE_CLOSE, MESSAGE_CLOSE, THINK_OPEN)
)
_CONTENT_MARKERS = MarkerSet((RESPONSE_OPEN, RESPONSE_CLOSE, MESSAGE_OPEN, MESSAGE_CLOSE, THINK_CLOSE))


class KimiK3Parser(ReasoningParser):
    """``kimi_k3``: XTML ``think`` channel → reasoning; wrappers stripped; ``tools`` kept verbatim."""

    name = "kimi_k3"
    trim_whitespace = False

    def __init__(
        self,
        *,
        stream_reasoning: bool = True,
        starts_in_reasoning: bool | None = None,
        max_buffer_size: int = MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(stream_reasoning=stream_reasoning, max_buffer_size=max_buffer_size)
        self.starts_in_reasoning = bool(starts_in_reasoning)
        self._mode = _REASON if self.starts_in_reasoning else _PRE
        self._observed = False  # a literal think-open marker was seen
        self._pre_ws = ""  # whitespace before any channel opened; dropped if the think channel opens

    @property
    def in_reasoning(self) -> bool:
        return self._mode == _REASON

    def mark_reasoning_started(self) -> None:
        if self._mode == _PRE:
            self._mode = _REASON
            self._drop_pre_ws()
            if not self._fed:
                self.starts_in_reasoning = True

    def _clone(self) -> KimiK3Parser:
        return KimiK3Parser(
            stream_reasoning=self.stream_reasoning,
            starts_in_reasoning=self.starts_in_reasoning,
            max_buffer_size=self.max_buffer_size,
        )

    def _markers(self) -> MarkerSet:
        if self._mode == _CONTENT:
            return _CONTENT_MARKERS
        if self._mode == _PRE:
            return _PRE_MARKERS
        if self._observed:
            return _OBSERVED_MARKERS
        return _ASSUMED_MARKERS if self._reason_started else _ASSUMED_FRESH_MARKERS

    def _plain(self, text: str, r: list[str], n: list[str]) -> None:
        mode = self._mode
        if mode == _REASON:
            self._reason(text, r)
        elif mode == _CONTENT:
            self._normal(text, n)
        elif text.isspace():  # before any channel: hold whitespace, dropped if the think channel opens
            self._pre_ws += text
            self._extra = len(self._pre_ws)
        else:
            self._normal(self._pre_ws + text, n)
            self._drop_pre_ws()
            self._mode = _CONTENT

    def _drop_pre_ws(self) -> None:
        self._pre_ws = ""
        self._extra = 0

    def _on_marker(self, marker: str, r: list[str], n: list[str]) -> None:
        mode = self._mode
        if mode == _CONTENT:
            return  # wrappers and a stray think-close: dropped
        if mode == _PRE:
            self._drop_pre_ws()
            if marker == THINK_OPEN:
                self._observed = True
                self._mode = _REASON
            elif marker != MESSAGE_OPEN:  # the turn wrapper opens before the think channel
                self._mode = _CONTENT
                if marker == TOOLS_OPEN:
                    self._normal(marker, n)
            return
        if marker == THINK_OPEN:  # redundant opener after a prefilled one
            self._observed = True
            return
        self._close_reasoning(r)
        self._mode = _CONTENT
        if marker == TOOLS_OPEN:
            self._normal(marker, n)

    def _end(self, tail: str, r: list[str], n: list[str]) -> None:
        if self._mode == _REASON:
            self._reason(tail, r)
            self._close_reasoning(r)
        elif self._mode == _PRE:
            self._normal(self._pre_ws + tail, n)
            self._drop_pre_ws()
        else:
            self._normal(tail, n)
