"""Tokenization caches: L0 exact match and L1 prefix-at-special-token-boundary (SMG's two levels).

L1 rests on one fact: an atomic added token (e.g. `<|im_end|>`) is split out of the text before the
tokenizer's model runs, so for a prefix ending right after one, tokenize(prefix) + tokenize(suffix) equals
tokenize(prefix + suffix). Chat prompts share long prefixes that end at such tokens (system prompt, earlier
turns), so only the new suffix needs tokenizing. `CachedTokenizer` checks that fact on the actual tokenizer
before enabling L1.

Token ids are stored as `array('I')` (4 bytes each; a list of ints costs ~36 bytes per id) and handed out as
fresh lists, so callers may mutate what they get.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from herder.tokenization.tokenizer import ASYNC_ENCODE_THRESHOLD, Tokenizer, encode_executor

# Defaults from SMG (--tokenizer-cache-l0-max-entries / -l0-max-memory / -l1-max-memory).
L0_MAX_ENTRIES = 10_000
L0_MAX_BYTES = 256 * 1024 * 1024
L1_MAX_BYTES = 50 * 1024 * 1024

# Which new boundaries of a prompt L1 stores (see CachedTokenizer._store_boundaries).
L1_STORE_HEAD = 2
L1_STORE_TAIL = 6

_ENTRY_OVERHEAD = 120  # dict slot + OrderedDict link + array header, roughly


@dataclass(slots=True)
class CacheStats:
    """Counters a metrics exporter can read."""

    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class L0Cache:
    """Exact-match LRU: (text, add_special_tokens) -> ids, bounded by entries and by bytes."""

    def __init__(self, max_entries: int = L0_MAX_ENTRIES, max_bytes: int = L0_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = CacheStats()
        self._data: OrderedDict[tuple[str, bool], tuple[array[int], int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, text: str, add_special_tokens: bool) -> list[int] | None:
        key = (text, add_special_tokens)
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
        return item[0].tolist()

    def put(self, text: str, add_special_tokens: bool, ids: list[int]) -> None:
        size = sys.getsizeof(text) + 4 * len(ids) + _ENTRY_OVERHEAD
        if size > self.max_bytes or self.max_entries <= 0:
            return
        key = (text, add_special_tokens)
        value = (array("I", ids), size)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._data[key] = value
            self.bytes += size
            while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
                _, (_, evicted) = self._data.popitem(last=False)
                self.bytes -= evicted

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0


class L1Cache:
    """Prefix cache keyed by a digest of the prefix text; values are the prefix's ids. LRU, bounded by bytes."""

    def __init__(self, max_bytes: int = L1_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = CacheStats()
        self.tokens_saved = 0
        self._data: OrderedDict[bytes, array[int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def longest(self, digests: list[bytes]) -> tuple[int, array[int]] | None:
        """The last index i whose digest is cached, with its ids (bumped to most recent)."""
        with self._lock:
            for i in range(len(digests) - 1, -1, -1):
                ids = self._data.get(digests[i])
                if ids is not None:
                    self._data.move_to_end(digests[i])
                    return i, ids
        return None

    def put(self, digest: bytes, ids: array[int]) -> None:
        size = 4 * len(ids) + len(digest) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            if digest in self._data:
                self._data.move_to_end(digest)
                return
            self._data[digest] = ids
            self.bytes += size
            while self.bytes > self.max_bytes:
                k, v = self._data.popitem(last=False)
                self.bytes -= 4 * len(v) + len(k) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0


class CachedTokenizer:
    """A `Tokenizer` behind L0 and L1. `encode` results are identical to the uncached tokenizer's.

    L1 serves add_special_tokens=False only (the chat path): with True, a post-processor may add BOS/EOS to
    the whole text, which a prefix split would misplace."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        enable_l0: bool = True,
        l0_max_entries: int = L0_MAX_ENTRIES,
        l0_max_bytes: int = L0_MAX_BYTES,
        enable_l1: bool = True,
        l1_max_bytes: int = L1_MAX_BYTES,
    ) -> None:
        self.tokenizer = tokenizer
        self.fingerprint = tokenizer.fingerprint
        self.l0 = L0Cache(l0_max_entries, l0_max_bytes) if enable_l0 else None
        self.l1: L1Cache | None = None
        self.l1_disabled_reason: str | None = None
        self._boundary_re: re.Pattern[str] | None = None
        self._boundary_ids: frozenset[int] = frozenset()
        if enable_l1:
            self._setup_l1(l1_max_bytes)

    # -- metrics ---------------------------------------------------------------------------------
    @property
    def l0_hit_rate(self) -> float:
        return self.l0.stats.hit_rate if self.l0 is not None else 0.0

    @property
    def l1_hit_rate(self) -> float:
        return self.l1.stats.hit_rate if self.l1 is not None else 0.0

    def stats(self) -> dict[str, Any]:
        """Counters and sizes for metrics / admin output."""
        out: dict[str, Any] = {"fingerprint": self.fingerprint}
        if self.l0 is not None:
            out["l0"] = {"hits": self.l0.stats.hits, "misses": self.l0.stats.misses, "hit_rate": self.l0_hit_rate,
                         "entries": len(self.l0), "bytes": self.l0.bytes}  # fmt: skip
        if self.l1 is not None:
            out["l1"] = {"hits": self.l1.stats.hits, "misses": self.l1.stats.misses, "hit_rate": self.l1_hit_rate,
                         "entries": len(self.l1), "bytes": self.l1.bytes, "tokens_saved": self.l1.tokens_saved}  # fmt: skip
        elif self.l1_disabled_reason:
            out["l1_disabled_reason"] = self.l1_disabled_reason
        return out

    def clear(self) -> None:
        """Drop every cached entry (counters are kept)."""
        if self.l0 is not None:
            self.l0.clear()
        if self.l1 is not None:
            self.l1.clear()

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Same result as `tokenizer.encode(text, add_special_tokens)`, through the caches."""
        if self.l0 is not None:
            hit = self.l0.get(text, add_special_tokens)
            if hit is not None:
                return hit
        return self._encode_miss(text, add_special_tokens)

    async def encode_async(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """`encode` off the event loop for long inputs (the caches are thread-safe); L0 hits stay inline."""
        if self.l0 is not None:
            hit = self.l0.get(text, add_special_tokens)
            if hit is not None:
                return hit
        if len(text) < ASYNC_ENCODE_THRESHOLD:
            return self._encode_miss(text, add_special_tokens)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(encode_executor(), self._encode_miss, text, add_special_tokens)

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """`encode` for each text (each goes through the caches)."""
        return [self.encode(t, add_special_tokens) for t in texts]

    def _encode_miss(self, text: str, add_special_tokens: bool) -> list[int]:
        if self.l1 is not None and not add_special_tokens:
            ids = self._encode_l1(text)
        else:
            ids = self.tokenizer.encode(text, add_special_tokens)
        if self.l0 is not None:
            self.l0.put(text, add_special_tokens, ids)
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens)

    # -- L1 --------------------------------------------------------------------------------------
    def _setup_l1(self, max_bytes: int) -> None:
        tokens = [t for t in self.tokenizer.added_tokens if t.atomic and t.content]
        if not tokens:
            self.l1_disabled_reason = "the tokenizer has no atomic added tokens"
            return
        # Longest first so that overlapping tokens match like the tokenizer's own (longest) matcher.
        alts = sorted({t.content for t in tokens}, key=len, reverse=True)
        self._boundary_re = re.compile("|".join(re.escape(a) for a in alts))
        self._boundary_ids = frozenset(t.id for t in tokens)
        problem = self._check_boundary_property(tokens)
        if problem is not None:
            self.l1_disabled_reason = problem
            self._boundary_re = None
            return
        self.l1 = L1Cache(max_bytes)

    def _check_boundary_property(self, tokens: list[Any]) -> str | None:
        """Verify tokenize(prefix)+tokenize(suffix) == tokenize(whole) at boundaries on this tokenizer."""
        enc = self.tokenizer.encode
        probes = [("Hello", " world"), ("a\n", "\nb"), ("x ", "y"), ("", " z"), ("1", "2 3")]
        # Plus words of this vocabulary (a probe made of unknown tokens could hide a difference).
        tok = self.tokenizer
        atomic_ids = {t.id for t in tokens}
        size = max(1, tok.vocab_size)
        words: list[str] = []
        for i in range(0, size, max(1, size // 16)):
            if i in atomic_ids:
                continue
            try:
                word = tok.decode([i], False)
            except Exception:  # holes in the id space (tiktoken)
                continue
            if word.strip() and "\ufffd" not in word:
                words.append(word)
        probes += [(words[i - 1], w) for i, w in enumerate(words) if i > 0]
        for t in tokens[:64]:
            for pre, post in probes:
                prefix = pre + t.content
                if enc(prefix + post, False) != enc(prefix, False) + enc(post, False):
                    return f"prefix split at {t.content!r} changes tokenization"
        return None

    def _encode_l1(self, text: str) -> list[int]:
        assert self.l1 is not None and self._boundary_re is not None
        ends = [m.end() for m in self._boundary_re.finditer(text)]
        if not ends:
            self.l1.stats.misses += 1
            return self.tokenizer.encode(text, False)
        # One pass over the text: a running hash, snapshotted at every boundary.
        digests: list[bytes] = []
        h = hashlib.blake2b(digest_size=16)
        pos = 0
        for end in ends:
            h.update(text[pos:end].encode("utf-8", "surrogatepass"))
            pos = end
            digests.append(h.copy().digest())
        found = self.l1.longest(digests)
        if found is None:
            self.l1.stats.misses += 1
            start_idx, prefix_ids, suffix_start = -1, array("I"), 0
        else:
            self.l1.stats.hits += 1
            start_idx, prefix_ids = found
            suffix_start = ends[start_idx]
            self.l1.tokens_saved += len(prefix_ids)
        suffix_ids = self.tokenizer.encode(text[suffix_start:], False)
        ids = prefix_ids.tolist() + suffix_ids
        self._store_boundaries(ids, len(prefix_ids), digests[start_idx + 1 :])
        return ids

    def _store_boundaries(self, ids: list[int], from_pos: int, digests: list[bytes]) -> None:
        """Cache the ids of new boundary prefixes: the i-th boundary token after `from_pos` ends the i-th.

        Storing every boundary would cost O(turns x prompt) memory per prompt, so only the first
        `L1_STORE_HEAD` (shared system prompts) and the last `L1_STORE_TAIL` (the next turn of the same
        conversation extends this prompt) new boundaries are stored."""
        if not digests:
            return
        assert self.l1 is not None
        boundary_ids = self._boundary_ids
        cuts = [i + 1 for i in range(from_pos, len(ids)) if ids[i] in boundary_ids]
        if len(cuts) != len(digests):
            # The text's boundary matches and the token stream disagree (should not happen); cache nothing.
            return
        n = len(cuts)
        keep = (
            range(n)
            if n <= L1_STORE_HEAD + L1_STORE_TAIL
            else [*range(L1_STORE_HEAD), *range(n - L1_STORE_TAIL, n)]
        )
        full = array("I", ids)
        for k in keep:
            self.l1.put(digests[k], full[: cuts[k]])
