"""Policy behaviour: exact round robin, near-uniform random, power_of_two load preference, cache_aware affinity."""

from __future__ import annotations

import random
from collections import Counter

from herder.policies import RoutingInfo, make_policy_factory
from herder.policies.cache_aware import CacheAwareConfig, CacheAwarePolicy
from herder.policies.simple import PowerOfTwoPolicy, RandomPolicy, RoundRobinPolicy
from herder.workers.breaker import BreakerConfig
from herder.workers.worker import HealthConfig, Worker, WorkerSpec, WorkerStatus


def make_workers(n: int) -> list[Worker]:
    out = []
    for i in range(n):
        w = Worker(WorkerSpec(url=f"http://127.0.0.1:{9000 + i}"), breaker=BreakerConfig(), health=HealthConfig())
        w.status = WorkerStatus.READY
        out.append(w)
    return out


def test_round_robin_alternates_exactly() -> None:
    workers = make_workers(3)
    policy = RoundRobinPolicy()
    picks = [policy.select(workers, RoutingInfo()) for _ in range(30)]
    assert picks == [workers[i % 3] for i in range(30)]


def test_random_is_near_uniform_over_1000() -> None:
    workers = make_workers(4)
    policy = RandomPolicy(random.Random(7))
    counts = Counter(policy.select(workers, RoutingInfo()) for _ in range(1000))
    assert set(counts) == set(workers)
    for w in workers:
        # expected 250 each; 5 sigma of a binomial(1000, 0.25) is ~68
        assert 180 < counts[w] < 320, counts


def test_power_of_two_prefers_less_loaded() -> None:
    workers = make_workers(4)
    workers[0].load = 50  # the slow worker accumulates in-flight requests
    policy = PowerOfTwoPolicy(random.Random(1))
    counts = Counter(policy.select(workers, RoutingInfo()) for _ in range(1000))
    # worker 0 only wins when it is not sampled at all: never, since any pair with it loses
    assert counts[workers[0]] == 0
    assert sum(counts.values()) == 1000


def test_power_of_two_tie_goes_to_first_sample_and_single_worker() -> None:
    workers = make_workers(1)
    assert PowerOfTwoPolicy().select(workers, RoutingInfo()) is workers[0]
    assert PowerOfTwoPolicy().select([], RoutingInfo()) is None


def _prompt(group: int, i: int) -> str:
    system = f"You are assistant number {group}. " + " ".join(f"rule{group}-{k}" for k in range(150))
    return f"{system} user question {i} about topic {i * 7}"


def test_cache_aware_keeps_prefix_groups_on_one_worker_when_balanced() -> None:
    workers = make_workers(4)
    policy = CacheAwarePolicy(CacheAwareConfig())
    rng = random.Random(3)
    per_group: dict[int, Counter[str]] = {g: Counter() for g in range(8)}
    for i in range(800):
        g = rng.randrange(8)
        w = policy.select(workers, RoutingInfo(lambda g=g, i=i: _prompt(g, i)))
        assert w is not None
        per_group[g][w.id] += 1
        w.processed += 1
    for g, counts in per_group.items():
        top = counts.most_common(1)[0][1]
        assert top / sum(counts.values()) >= 0.9, (g, counts)
    # and the groups are spread over the fleet, not all on one worker
    owners = {counts.most_common(1)[0][0] for counts in per_group.values()}
    assert len(owners) >= 3


def test_cache_aware_falls_back_to_least_loaded_when_imbalanced() -> None:
    workers = make_workers(3)
    policy = CacheAwarePolicy(CacheAwareConfig(balance_abs_threshold=4, balance_rel_threshold=1.5))
    info = RoutingInfo(lambda: _prompt(1, 1))
    owner = policy.select(workers, info)
    assert owner is not None
    # balanced: the same prefix goes back to its owner even if it is not the least loaded
    owner.load = 2
    assert policy.select(workers, RoutingInfo(lambda: _prompt(1, 2))) is owner
    # imbalanced (diff 10 > 4 and 10 > 1.5 * 0): least loaded wins
    owner.load = 10
    chosen = policy.select(workers, RoutingInfo(lambda: _prompt(1, 3)))
    assert chosen is not owner and chosen is not None and chosen.load == 0


def test_cache_aware_short_or_unmatched_text_goes_to_least_loaded() -> None:
    workers = make_workers(3)
    workers[0].load, workers[1].load, workers[2].load = 3, 1, 2
    policy = CacheAwarePolicy()
    assert policy.select(workers, RoutingInfo(lambda: "hi")) is workers[1]


def test_cache_aware_skips_unavailable_owner() -> None:
    workers = make_workers(2)
    policy = CacheAwarePolicy()
    owner = policy.select(workers, RoutingInfo(lambda: _prompt(2, 0)))
    others = [w for w in workers if w is not owner]
    assert policy.select(others, RoutingInfo(lambda: _prompt(2, 1))) is others[0]


def test_cache_aware_eviction_bounds_tree_per_worker() -> None:
    workers = make_workers(1)
    policy = CacheAwarePolicy(CacheAwareConfig(max_tree_size=64 * 10))
    for g in range(50):
        policy.select(workers, RoutingInfo(lambda g=g: _prompt(g, 0)))
    assert policy.text_index.size(workers[0].id) > 64 * 10
    policy.maintenance()
    assert policy.text_index.size(workers[0].id) <= 64 * 10
    # the most recent group is still matched after eviction
    match = policy.text_index.match(_prompt(49, 1))
    assert match.matched_blocks > 0


def test_token_pages_are_used_for_token_ids() -> None:
    workers = make_workers(2)
    policy = CacheAwarePolicy()
    tokens = list(range(1000))
    first = policy.select(workers, RoutingInfo(tokens=tokens))
    first.load = 5  # type: ignore[union-attr]
    assert policy.select(workers, RoutingInfo(tokens=[*tokens, 5, 6])) is first


def test_factory_rejects_unknown_policy() -> None:
    try:
        make_policy_factory("nope")
    except ValueError as exc:
        assert "cache_aware" in str(exc)
    else:
        raise AssertionError("expected ValueError")
