"""Inkling reasoning parser for the TML typed-message format.

Inkling writes its turn as a sequence of typed messages, each framed by special tokens::

    <|message_model|>[author/tool name]<|content_KIND|> payload <|end_message|>

with ``KIND`` one of ``thinking``, ``text``, ``invoke_tool_json``, ``invoke_tool_text``, ``xml``,
``image``, ``audio_input``, ``tool_error``, and ``<|content_model_end_sampling|>`` at the very end.

What this parser does (after SMG's ``inkling`` reasoning parser; documented choices marked *):

* ``<|content_thinking|>`` payloads → ``reasoning_text``; ``<|content_text|>`` payloads → normal text.
  Several thinking blocks are concatenated; with ``stream_reasoning`` off each block is released at
  its ``<|end_message|>``.
* JSON tool-call messages are kept verbatim in the normal text, *header included*
  (``<|message_model|>NAME<|content_invoke_tool_json|>{…}<|end_message|>``), so the ``inkling`` tool
  parser sees the format of spec 8.1. (* SMG drops the header; keeping it is a superset.)
* Headerless text-mode invocations (``<|content_invoke_tool_text|>``) cannot be expressed as OpenAI
  function calls and are suppressed, as in SMG; so are image/audio/tool-error payloads and messages
  the model writes under a non-model author (``<|message_user|>`` etc.). (*)
* ``<|content_xml|>`` payloads are model content → normal text. (*)
* All other control tokens (``<|message_model|>``, ``<|end_message|>``, ``<|content_model_end_sampling|>``,
  ``<|endoftext|>``, ``<|audio_end|>``, the content-kind tokens) are removed from the output.
* Text before any header is normal text. A header name never followed by a content kind is
  released as normal text at the end of the stream rather than lost. (*)
* No whitespace trimming: TML payloads are delimited by special tokens.
"""

from __future__ import annotations

from herder.parsers.reasoning.base import MAX_BUFFER_SIZE, MarkerSet, ReasoningParser

MESSAGE_MODEL = "<|message_model|>"
CONTENT_THINKING = "<|content_thinking|>"
CONTENT_TEXT = "<|content_text|>"
CONTENT_XML = "<|content_xml|>"
CONTENT_INVOKE_TOOL_JSON = "<|content_invoke_tool_json|>"
CONTENT_INVOKE_TOOL_TEXT = "<|content_invoke_tool_text|>"
CONTENT_MODEL_END_SAMPLING = "<|content_model_end_sampling|>"
END_MESSAGE = "<|end_message|>"
ENDOFTEXT = "<|endoftext|>"

_FOREIGN_HEADERS = ("<|message_user|>", "<|message_system|>", "<|message_tool|>")
_SUPPRESSED_KINDS = (
    CONTENT_INVOKE_TOOL_TEXT,
    "<|content_image|>",
    "<|content_audio_input|>",
    "<|content_tool_error|>",
)
_END_TOKENS = (END_MESSAGE, CONTENT_MODEL_END_SAMPLING, ENDOFTEXT)

#: Every TMLv0 control token the parser recognises (kept in sync with SMG's list).
CONTROL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    MESSAGE_MODEL,
    *_FOREIGN_HEADERS,
    CONTENT_TEXT,
    CONTENT_THINKING,
    CONTENT_XML,
    CONTENT_INVOKE_TOOL_JSON,
    *_SUPPRESSED_KINDS,
    CONTENT_MODEL_END_SAMPLING,
    END_MESSAGE,
    "<|audio_end|>",
)

_ALL = MarkerSet(CONTROL_TOKENS)
_TOOL_END = MarkerSet(_END_TOKENS)

# Block kinds: where payload text goes.
_NONE, _HEADER, _REASON, _CONTENT, _TOOL, _SUPPRESS = range(6)


class InklingParser(ReasoningParser):
    """``inkling``: TML typed blocks; thinking → reasoning, text → normal, JSON tool calls verbatim."""

    name = "inkling"
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
        self._kind = _REASON if self.starts_in_reasoning else _NONE
        self._header: list[str] = []  # author/tool name between <|message_model|> and the kind token

    @property
    def in_reasoning(self) -> bool:
        return self._kind == _REASON

    def mark_reasoning_started(self) -> None:
        """The prompt ended with ``<|message_model|><|content_thinking|>``."""
        if self._kind in (_NONE, _HEADER):
            self._kind = _REASON
            self._header.clear()
            self._extra = 0
            if not self._fed:
                self.starts_in_reasoning = True

    def _clone(self) -> InklingParser:
        return InklingParser(
            stream_reasoning=self.stream_reasoning,
            starts_in_reasoning=self.starts_in_reasoning,
            max_buffer_size=self.max_buffer_size,
        )

    def _markers(self) -> MarkerSet:
        return _TOOL_END if self._kind == _TOOL else _ALL

    def _plain(self, text: str, r: list[str], n: list[str]) -> None:
        if not text:
            return
        kind = self._kind
        if kind == _REASON:
            self._reason(text, r)
        elif kind == _HEADER:
            self._header.append(text)
            self._extra += len(text)
        elif kind != _SUPPRESS:  # _NONE, _CONTENT, _TOOL
            self._normal(text, n)

    def _take_header(self) -> str:
        header = "".join(self._header)
        self._header.clear()
        self._extra = 0
        return header

    def _on_marker(self, token: str, r: list[str], n: list[str]) -> None:
        was_reasoning = self._kind == _REASON
        self._switch(token, n)
        if was_reasoning and self._kind != _REASON:
            self._close_reasoning(r)

    def _switch(self, token: str, n: list[str]) -> None:
        kind = self._kind
        if kind == _TOOL:  # only end tokens are matched here; the frame stays verbatim
            self._normal(token, n)
            self._kind = _NONE
            return
        if token == CONTENT_INVOKE_TOOL_JSON and kind != _SUPPRESS:
            prefix = MESSAGE_MODEL + self._take_header() if kind == _HEADER else ""
            self._normal(prefix + token, n)
            self._kind = _TOOL
            return
        if kind == _HEADER and token != MESSAGE_MODEL:
            self._take_header()  # protocol metadata, not content
        if token == MESSAGE_MODEL:
            if kind == _HEADER:  # two headers in a row: the first one's text was content after all
                self._normal(self._take_header(), n)
            self._kind = _HEADER
        elif token in _END_TOKENS:
            self._kind = _NONE
        elif token in _FOREIGN_HEADERS or token in _SUPPRESSED_KINDS:
            self._kind = _SUPPRESS
        elif kind == _SUPPRESS:
            pass  # a content kind inside a suppressed message stays suppressed
        elif token == CONTENT_THINKING:
            self._kind = _REASON
        elif token in (CONTENT_TEXT, CONTENT_XML):
            self._kind = _CONTENT
        # <|audio_end|>: dropped, block kind unchanged.

    def _end(self, tail: str, r: list[str], n: list[str]) -> None:
        self._plain(tail, r, n)
        if self._kind == _REASON:
            self._close_reasoning(r)
        elif self._kind == _HEADER:
            self._normal(self._take_header(), n)
