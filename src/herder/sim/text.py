"""Word-level "tokenizer" and deterministic text helpers for the simulated engine.

The simulator has no real vocabulary on its HTTP side, so it uses a cheap, documented approximation:

* **Prompt tokens** of a text = its whitespace-separated pieces (``text.split()``, C speed). One "token" is
  roughly one word, so ``prompt_tokens`` is about 0.75x what a BPE tokenizer would report for English.
  The prefix cache hashes blocks of these pieces (see ``engine.PrefixCache``).
* **Output tokens** are words from :data:`WORDS`, each with a leading space; the token id of ``WORDS[i]`` is
  ``WORD_ID_BASE + i``. Joining the pieces gives the completion text.
* **Scripted outputs** (a request naming the exact text to return) are cut with :func:`exact_pieces` so that
  joining the pieces reproduces the text byte for byte; their ids come from :func:`piece_id`.
* Stable hashes (:func:`stable_hash`) seed the output generator and the embeddings, so a given prompt gives the
  same output in every process and on every run (unlike ``hash(str)``, which Python salts per process).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

# 64 common words; a power of two keeps index arithmetic cheap.
WORDS: tuple[str, ...] = tuple(
    " " + w
    for w in [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "and",
        "then",
        "it",
        "runs",
        "far",
        "away",
        "again",
        "model",
        "token",
        "cache",
        "prefix",
        "worker",
        "gateway",
        "stream",
        "request",
        "latency",
        "batch",
        "engine",
        "prompt",
        "simple",
        "answer",
        "is",
        "that",
        "we",
        "can",
        "see",
        "how",
        "data",
        "moves",
        "through",
        "each",
        "layer",
        "of",
        "this",
        "system",
        "when",
        "one",
        "block",
        "fills",
        "another",
        "starts",
        "so",
        "time",
        "grows",
        "with",
        "load",
        "but",
        "never",
        "stops",
        "here",
        "today",
        "while",
        "light",
        "rain",
        "falls",
    ]
)
assert len(WORDS) == 64, len(WORDS)

WORD_ID_BASE = 1000
"""Token id of ``WORDS[0]``; ids ``WORD_ID_BASE .. WORD_ID_BASE + 63`` are the generated words."""

SCRIPTED_ID_BASE = 5000
SCRIPTED_ID_SPAN = 25000
"""Scripted pieces get ids in ``[SCRIPTED_ID_BASE, SCRIPTED_ID_BASE + SCRIPTED_ID_SPAN)`` (below 32000)."""

_PIECE_RE = re.compile(r"\s*\S+")


def stable_hash(data: str | bytes) -> int:
    """64-bit hash of ``data`` that is the same in every process (blake2b)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def stable_hash_ids(ids: Sequence[int]) -> int:
    """Stable 64-bit hash of a token-id sequence."""
    return stable_hash(",".join(map(str, ids)))


def prompt_pieces(text: str) -> list[str]:
    """The prompt's "tokens": its whitespace-separated pieces."""
    return text.split()


def count_tokens(text: str) -> int:
    """Approximate token count of ``text`` (whitespace pieces, at least 1 for any non-empty text)."""
    n = len(text.split())
    return n if n or not text else 1


def word_piece(token_id: int) -> str:
    """Text of a generated token id (ids outside the word range render as a word chosen by the id)."""
    return WORDS[(token_id - WORD_ID_BASE) & 63]


def exact_pieces(text: str) -> list[str]:
    """Cut ``text`` into word pieces (leading whitespace attached) whose concatenation is ``text``."""
    pieces = _PIECE_RE.findall(text)
    if not pieces:
        return [text] if text else []
    tail = len(text) - sum(map(len, pieces))
    if tail:  # trailing whitespace belongs to the last piece
        pieces[-1] += text[-tail:]
    return pieces


def piece_id(piece: str) -> int:
    """Stable token id of a scripted piece."""
    return SCRIPTED_ID_BASE + stable_hash(piece) % SCRIPTED_ID_SPAN


def generate_word_ids(seed: int, n: int) -> list[int]:
    """``n`` deterministic word token ids derived from ``seed`` (a 64-bit LCG; no global RNG state)."""
    out: list[int] = []
    x = seed & 0xFFFFFFFFFFFFFFFF
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out.append(WORD_ID_BASE + (x >> 58))  # top 6 bits: 0..63
    return out


def content_text(content: Any) -> str:
    """Text of an OpenAI message ``content`` (a string, or a list of parts whose text parts are joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    parts.append(t)
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def render_chat(messages: Iterable[Any]) -> str:
    """A plain "chat template": ``<role> content`` per message, then ``<assistant>``.

    Deterministic and prefix-stable: a conversation that grows by appending messages renders to a text whose
    earlier pieces are unchanged, so multi-turn chats hit the prefix cache as they would on a real engine.
    """
    out: list[str] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        out.append(f"<{role if isinstance(role, str) else 'user'}>")
        out.append(content_text(m.get("content")))
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            for c in calls:
                fn = c.get("function") if isinstance(c, dict) else None
                if isinstance(fn, dict):
                    out.append(f"{fn.get('name')} {fn.get('arguments')}")
    out.append("<assistant>")
    return " ".join(out)
