"""Prefix cache of the simulated engine: an LRU over chained block hashes, plus the KV events it emits.

Split from ``engine.py`` (which re-exports ``BLOCK_SIZE``, ``KvEvent`` and ``PrefixCache``). Pure and
sans-I/O: ``PrefixCache.admit(units)`` returns the cached prefix length and updates the LRU; an optional
``listener`` receives a ``KvEvent`` per change (for KV-event streams).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

BLOCK_SIZE = 16


@dataclass(slots=True, frozen=True)
class KvEvent:
    """A prefix-cache change: "stored" (new blocks, in order, ``parent_hash`` = block before the first),
    "removed" (evicted blocks) or "cleared" (flush). ``token_ids`` = the stored blocks' units if they are ints."""

    kind: Literal["stored", "removed", "cleared"]
    block_hashes: list[int]
    parent_hash: int | None = None
    token_ids: list[int] | None = None


class PrefixCache:
    """LRU of prompt blocks keyed by a hash chain, so only true prefixes hit.

    Block *i*'s key is ``hash((key[i-1], tuple(block_i)))``: a block matches only if every block before it
    matches too. Only full blocks are cached. Capacity is in blocks; the least recently used blocks go first.
    Keys of int units are the same in every process; keys of str units are salted per process (fine: the cache
    lives in one process). Cost: one C-level tuple hash per block.
    """

    __slots__ = ("_lru", "block_size", "capacity", "listener")

    def __init__(
        self,
        capacity_blocks: int,
        block_size: int = BLOCK_SIZE,
        listener: Callable[[KvEvent], None] | None = None,
    ) -> None:
        self.capacity = max(0, capacity_blocks)
        self.block_size = max(1, block_size)
        self.listener = listener
        self._lru: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lru)

    def block_hashes(self, units: Sequence[Hashable]) -> list[int]:
        """Chained hashes of the full blocks of ``units``."""
        bs = self.block_size
        out: list[int] = []
        h = 0
        for i in range(0, len(units) - bs + 1, bs):
            h = hash((h, tuple(units[i : i + bs])))
            out.append(h)
        return out

    def match(self, units: Sequence[Hashable]) -> int:
        """Cached prefix length in units (no change to the cache)."""
        n = 0
        for h in self.block_hashes(units):
            if h not in self._lru:
                break
            n += 1
        return n * self.block_size

    def admit(self, units: Sequence[Hashable]) -> int:
        """Return the cached prefix length, then insert every full block (refreshing hits) and evict to fit."""
        if self.capacity == 0:
            return 0
        lru = self._lru
        hashes = self.block_hashes(units)
        hit = 0
        for h in hashes:
            if h not in lru:
                break
            lru.move_to_end(h)
            hit += 1
        new = hashes[hit:]
        for h in new:
            lru[h] = None
        evicted: list[int] = []
        while len(lru) > self.capacity:
            evicted.append(lru.popitem(last=False)[0])
        if self.listener is not None:
            self._notify(units, hashes, hit, evicted)
        return hit * self.block_size

    def _notify(self, units: Sequence[Hashable], hashes: list[int], hit: int, evicted: list[int]) -> None:
        assert self.listener is not None
        if hit < len(hashes):
            bs = self.block_size
            toks = units[hit * bs : len(hashes) * bs]
            ids = [int(t) for t in toks] if all(isinstance(t, int) for t in toks) else None  # type: ignore[call-overload]
            self.listener(KvEvent("stored", hashes[hit:], hashes[hit - 1] if hit else None, ids))
        if evicted:
            self.listener(KvEvent("removed", evicted))

    def clear(self) -> None:
        self._lru.clear()
        if self.listener is not None:
            self.listener(KvEvent("cleared", []))
