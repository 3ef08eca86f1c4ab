"""Incremental detokenization (sans-I/O): token ids in, only the new text out.

The prefix/read-offset algorithm of HF's DecodeStream and SGLang/vLLM's incremental decode: decode a small
window that starts a few tokens back (so decoders that strip or merge leading spaces see context), emit what
extends past the already-emitted part, and hold text that ends in U+FFFD (a multi-byte character split
between tokens) until the next token completes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"


class _Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


@dataclass(slots=True)
class IncrementalDetokenizer:
    """Per request (and per choice when n > 1). Concatenating every `feed` result and `finish()` gives
    `tokenizer.decode(all_ids)`."""

    tokenizer: _Decoder
    skip_special_tokens: bool = True
    ids: list[int] = field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0

    @classmethod
    def with_prompt(
        cls, tokenizer: _Decoder, prompt_ids: list[int], *, skip_special_tokens: bool = True, context: int = 5
    ) -> IncrementalDetokenizer:
        """Start after a prompt: its last `context` ids seed the window (for correct leading spaces)."""
        tail = list(prompt_ids[-context:]) if context > 0 else []
        return cls(tokenizer, skip_special_tokens, tail, 0, len(tail))

    def feed(self, token_ids: Iterable[int] | int) -> str:
        """Add generated ids; return the text they complete (possibly "")."""
        if isinstance(token_ids, int):
            self.ids.append(token_ids)
        else:
            self.ids.extend(token_ids)
        if len(self.ids) == self.read_offset:
            return ""
        decode = self.tokenizer.decode
        prefix_text = decode(self.ids[self.prefix_offset : self.read_offset], self.skip_special_tokens)
        new_text = decode(self.ids[self.prefix_offset :], self.skip_special_tokens)
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHAR):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return new_text[len(prefix_text) :]
        return ""

    def finish(self) -> str:
        """Flush held text (an incomplete character at the very end comes out as U+FFFD)."""
        if len(self.ids) == self.read_offset:
            return ""
        decode = self.tokenizer.decode
        prefix_text = decode(self.ids[self.prefix_offset : self.read_offset], self.skip_special_tokens)
        new_text = decode(self.ids[self.prefix_offset :], self.skip_special_tokens)
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return new_text[len(prefix_text) :]
