"""The `Tokenizer` facade: one interface over HF `tokenizers` (tokenizer.json) and tiktoken.

Only the gRPC path uses this: herder renders the chat template, tokenizes the prompt and detokenizes the
output itself. Construction lives in `loader.py`; this module only wraps an already-loaded backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from herder.tokenization.fast_bpe import FastBpe

# Inputs longer than this (in characters) are encoded in a worker thread by `encode_async`; shorter ones
# inline, because a thread hop (~20-50 µs) costs more than encoding a short prompt (~1 k tokens at 4 KB).
ASYNC_ENCODE_THRESHOLD = 4096

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def encode_executor() -> ThreadPoolExecutor:
    """The small process-wide pool used for long encodes (the tokenizers library releases the GIL)."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                workers = max(1, min(4, os.cpu_count() or 1))
                _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="herder-tokenize")
    return _executor


@dataclass(frozen=True, slots=True)
class AddedTokenInfo:
    """An added (atomic) token of the vocabulary."""

    id: int
    content: str
    special: bool
    # True when the tokenizer matches it verbatim (no strip / single-word / normalization options), which is
    # what makes "tokenize(prefix) + tokenize(suffix)" exact at its boundary.
    atomic: bool = True


class Backend(Protocol):
    """What a tokenizer backend must provide."""

    def encode(self, text: str, add_special_tokens: bool) -> list[int]: ...
    def encode_batch(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str: ...
    def vocab_size(self) -> int: ...
    def id_to_token(self, token_id: int) -> str | None: ...
    def token_to_id(self, token: str) -> int | None: ...
    def added_tokens(self) -> list[AddedTokenInfo]: ...


class HFBackend:
    """A `tokenizers.Tokenizer` (HF tokenizer.json)."""

    kind = "huggingface"

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        # Special tokens written in the text (by the chat template) must map to their ids.
        if getattr(tok, "encode_special_tokens", False):
            tok.encode_special_tokens = False
        # Measured with tokenizers 0.23 (bench/tokenizer_bench.py): `encode` holds the GIL for the whole call,
        # `encode_batch_fast` releases it and skips offsets (about 1.2-1.6x faster). So a single text is
        # encoded as a batch of one: same ids, and worker threads really run in parallel with the event loop.
        self._batch_fast = getattr(tok, "encode_batch_fast", None)
        # Byte-level BPE tokenizers encode through tiktoken when it gives the same ids (fast_bpe.py); the loader
        # sets it after this constructor configured `tok`, whose answers the fast encoder is checked against.
        self.fast: FastBpe | None = None

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        fast = self.fast
        if fast is not None:
            fast_ids = fast.encode(text, add_special_tokens)
            if fast_ids is not None:
                return fast_ids
        if self._batch_fast is not None:
            ids: list[int] = self._batch_fast([text], add_special_tokens=add_special_tokens)[0].ids
        else:
            ids = self.tok.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        if self.fast is not None:
            return [self.encode(text, add_special_tokens) for text in texts]
        encode = self._batch_fast or self.tok.encode_batch
        return [e.ids for e in encode(texts, add_special_tokens=add_special_tokens)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        text: str = self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text

    def vocab_size(self) -> int:
        size: int = self.tok.get_vocab_size(with_added_tokens=True)
        return size

    def id_to_token(self, token_id: int) -> str | None:
        token: str | None = self.tok.id_to_token(token_id)
        return token

    def token_to_id(self, token: str) -> int | None:
        tid: int | None = self.tok.token_to_id(token)
        return tid

    def added_tokens(self) -> list[AddedTokenInfo]:
        out = []
        for tid, at in sorted(self.tok.get_added_tokens_decoder().items()):
            atomic = not (at.lstrip or at.rstrip or at.single_word or at.normalized)
            out.append(AddedTokenInfo(int(tid), str(at.content), bool(at.special), atomic))
        return out


class TiktokenBackend:
    """A `tiktoken.Encoding`. Special tokens written in the text are encoded as special tokens."""

    kind = "tiktoken"

    def __init__(self, enc: Any) -> None:
        self.enc = enc
        self._special: dict[str, int] = dict(enc._special_tokens)
        self._special_ids = frozenset(self._special.values())

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        # tiktoken adds no BOS/EOS; add_special_tokens has nothing to add.
        ids: list[int] = self.enc.encode(text, allowed_special="all", disallowed_special=())
        return ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        out: list[list[int]] = self.enc.encode_batch(texts, allowed_special="all", disallowed_special=())
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        text: str = self.enc.decode(list(ids), errors="replace")
        return text

    def vocab_size(self) -> int:
        size: int = self.enc.n_vocab
        return size

    def id_to_token(self, token_id: int) -> str | None:
        try:
            raw: bytes = self.enc.decode_single_token_bytes(token_id)
        except KeyError:
            return None
        return raw.decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int | None:
        if token in self._special:
            return self._special[token]
        try:
            tid: int = self.enc.encode_single_token(token.encode("utf-8"))
        except KeyError:
            return None
        return tid

    def added_tokens(self) -> list[AddedTokenInfo]:
        return [
            AddedTokenInfo(i, s, True, True) for s, i in sorted(self._special.items(), key=lambda x: x[1])
        ]


@dataclass(slots=True)
class Tokenizer:
    """A loaded tokenizer plus the metadata the gateway needs (EOS ids, special tokens, chat template)."""

    backend: Backend
    source: str = ""
    eos_token_ids: list[int] = field(default_factory=list)
    bos_token: str | None = None
    eos_token: str | None = None
    # Special-token strings for the template context (bos_token, eos_token, pad_token, unk_token, ...).
    special_tokens_map: dict[str, Any] = field(default_factory=dict)
    # The default chat template, and any named ones (tokenizer_config.json's list form).
    chat_template: str | None = None
    chat_templates: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = None
    _added: list[AddedTokenInfo] | None = None

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`. The gRPC chat path uses add_special_tokens=False (the template adds them)."""
        return self.backend.encode(text, add_special_tokens)

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Token ids of several texts (parallel inside the HF backend)."""
        return self.backend.encode_batch(list(texts), add_special_tokens)

    async def encode_async(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """`encode` that keeps the event loop responsive: long inputs run in a worker thread."""
        if len(text) < ASYNC_ENCODE_THRESHOLD:
            return self.backend.encode(text, add_special_tokens)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(encode_executor(), self.backend.encode, text, add_special_tokens)

    # -- decoding --------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; incomplete UTF-8 at the end shows up as U+FFFD."""
        return self.backend.decode(ids, skip_special_tokens)

    # -- vocabulary ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Vocabulary size including added tokens."""
        return self.backend.vocab_size()

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of `token_id` (None when out of range)."""
        return self.backend.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary string (None when unknown)."""
        return self.backend.token_to_id(token)

    @property
    def added_tokens(self) -> list[AddedTokenInfo]:
        """All added tokens (special or not), sorted by id."""
        if self._added is None:
            self._added = self.backend.added_tokens()
        return self._added

    @property
    def special_tokens(self) -> dict[str, int]:
        """Added tokens marked special: content -> id."""
        return {t.content: t.id for t in self.added_tokens if t.special}

    @property
    def kind(self) -> str:
        """Backend name: "huggingface" or "tiktoken"."""
        return str(getattr(self.backend, "kind", type(self.backend).__name__))

    @property
    def fingerprint(self) -> str:
        """Vocab size + hash of a vocabulary sample + hash of the special tokens; changes with the vocab."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            size = self.vocab_size
            h.update(str(size).encode())
            step = max(1, size // 512)
            for tid in range(0, size, step):
                h.update(b"\x00%d=" % tid)
                h.update((self.id_to_token(tid) or "").encode("utf-8", "surrogatepass"))
            for t in self.added_tokens:
                h.update(b"\x01%d=%s%d" % (t.id, t.content.encode("utf-8", "surrogatepass"), int(t.special)))
            self._fingerprint = f"{size}-{h.hexdigest()}"
        return self._fingerprint

    def template_special_tokens(self) -> dict[str, Any]:
        """The special-token variables a chat template sees (bos_token, eos_token, ...)."""
        out: dict[str, Any] = dict(self.special_tokens_map)
        out.setdefault("bos_token", self.bos_token or "")
        out.setdefault("eos_token", self.eos_token or "")
        return out


def token_content(value: Any) -> str | None:
    """tokenizer_config.json writes tokens as a string or as {"content": ...}; return the string."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return None
