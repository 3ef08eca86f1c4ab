"""Load-balancing policies and the per-model policy registry."""

from __future__ import annotations

from collections.abc import Callable

from herder.policies.base import Policy, RoutingInfo, RoutingSource
from herder.policies.cache_aware import CacheAwareConfig, CacheAwarePolicy
from herder.policies.simple import PowerOfTwoPolicy, RandomPolicy, RoundRobinPolicy

POLICY_NAMES = ("cache_aware", "random", "round_robin", "power_of_two")


def make_policy_factory(name: str, cache_config: CacheAwareConfig | None = None) -> Callable[[], Policy]:
    """A factory producing fresh policy instances (one per model) for policy `name`."""
    if name == "random":
        return RandomPolicy
    if name == "round_robin":
        return RoundRobinPolicy
    if name == "power_of_two":
        return PowerOfTwoPolicy
    if name == "cache_aware":
        cfg = cache_config or CacheAwareConfig()
        return lambda: CacheAwarePolicy(cfg)
    raise ValueError(f"unknown policy '{name}' (valid: {', '.join(POLICY_NAMES)})")


class PolicyRegistry:
    """One policy instance per (model, worker type); created on first use."""

    def __init__(self, factory: Callable[[], Policy], name: str) -> None:
        self.factory = factory
        self.name = name
        self._policies: dict[tuple[str | None, str], Policy] = {}

    def get(self, model: str | None, worker_type: str = "regular") -> Policy:
        key = (model, worker_type)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = self.factory()
        return policy

    def maintenance(self) -> None:
        for policy in self._policies.values():
            policy.maintenance()


__all__ = ["POLICY_NAMES", "Policy", "PolicyRegistry", "RoutingInfo", "RoutingSource", "make_policy_factory"]
