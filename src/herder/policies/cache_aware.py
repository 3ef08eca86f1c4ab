"""cache_aware: SMG's prefix-affinity policy with load-imbalance fallback (spec 3.1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from herder.policies.base import Policy, RoutingSource, least_loaded
from herder.policies.prefix_index import TEXT_BLOCK_CHARS, TOKEN_PAGE_SIZE, PrefixIndex
from herder.workers.worker import Worker


@dataclass(slots=True)
class CacheAwareConfig:
    cache_threshold: float = 0.3
    balance_abs_threshold: int = 64
    balance_rel_threshold: float = 1.5
    max_tree_size: int = 67_108_864
    block_chars: int = TEXT_BLOCK_CHARS
    # Several gateway processes (--workers N) each keep their own tree. So that they agree on where a new prefix
    # goes, an unmatched prefix is placed by rendezvous hashing of its first blocks over the candidates (bounded
    # by load), instead of on the least-loaded worker; every process then finds the group on the same worker.
    deterministic_placement: bool = False
    placement_blocks: int = 4
    placement_load_factor: float = 1.25


class CacheAwarePolicy(Policy):
    """Route to the worker that owns the longest matching prefix when balanced, else to the least loaded."""

    name = "cache_aware"

    def __init__(self, config: CacheAwareConfig | None = None) -> None:
        self.config = config or CacheAwareConfig()
        self.text_index = PrefixIndex(block=self.config.block_chars)
        self.token_index = PrefixIndex(block=TOKEN_PAGE_SIZE)

    def select(self, workers: Sequence[Worker], info: RoutingSource) -> Worker | None:
        if not workers:
            return None
        cfg = self.config
        # One pass: min-load worker (tie-break on processed requests) and the max load.
        best = workers[0]
        best_key = (best.load, best.processed)
        max_load = best.load
        for worker in workers[1:]:
            load = worker.load
            if load > max_load:
                max_load = load
            key = (load, worker.processed)
            if key < best_key:
                best, best_key = worker, key
        min_load = best_key[0]

        if info.tokens is not None:
            index, seq = self.token_index, info.tokens
        else:
            index, seq = self.text_index, info.text  # type: ignore[assignment]
        if len(seq) < index.block:
            # Shorter than one block: nothing to match or remember (the tree holds whole blocks only), and no
            # prefix worth placing: the least loaded worker, in every process.
            return best
        match = index.match(seq)

        chosen = best
        imbalanced = (max_load - min_load) > cfg.balance_abs_threshold and (
            max_load > min_load * cfg.balance_rel_threshold)
        if not imbalanced:
            if (match.tenants and len(seq)
                    and match.matched_blocks * index.block / len(seq) > cfg.cache_threshold):
                owner = _freshest_available(match.tenants, workers)
                if owner is not None:
                    chosen = owner
            elif cfg.deterministic_placement and len(workers) > 1:
                chosen = self._place(match.hashes, seq, workers, best)
        index.insert(match.hashes, chosen.id)
        return chosen

    def _place(self, hashes: list[int], seq: str | Sequence[int], workers: Sequence[Worker],
               least: Worker) -> Worker:
        """Rendezvous (highest random weight) placement of a new prefix, the same in every gateway process
        (forked processes share the string-hash seed), with a load bound so a hot prefix cannot pile up."""
        key = hashes[min(len(hashes), self.config.placement_blocks) - 1]
        best_worker = least
        best_score = -1
        for worker in workers:
            score = hash((key, worker.url)) & 0xFFFFFFFFFFFFFFFF
            if score > best_score:
                best_worker, best_score = worker, score
        total = sum(w.load for w in workers)
        bound = (total + 1) / len(workers) * self.config.placement_load_factor
        return best_worker if best_worker.load <= bound else least

    def on_workers_changed(self, workers: Sequence[Worker]) -> None:
        # Like SMG, removed workers are not pruned eagerly: LRU eviction ages them out, and the lookup only
        # returns owners that are still available.
        pass

    def maintenance(self) -> None:
        self.text_index.evict(self.config.max_tree_size)
        self.token_index.evict(self.config.max_tree_size)


def _freshest_available(tenants: dict[str, int], workers: Sequence[Worker]) -> Worker | None:
    """The most recently used owner of the matched prefix that is still a candidate."""
    best: Worker | None = None
    best_tick = -1
    for worker in workers:
        tick = tenants.get(worker.id)
        if tick is not None and tick > best_tick:
            best, best_tick = worker, tick
    return best


__all__ = ["CacheAwareConfig", "CacheAwarePolicy", "least_loaded"]
