"""random, round_robin and power_of_two (spec section 3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from herder.policies.base import Policy, RoutingSource
from herder.workers.worker import Worker


class RandomPolicy(Policy):
    """Uniform choice among the available workers."""

    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def select(self, workers: Sequence[Worker], info: RoutingSource) -> Worker | None:
        if not workers:
            return None
        return workers[int(self._rng.random() * len(workers))]


class RoundRobinPolicy(Policy):
    """A counter per model; picks `available[counter mod n]`."""

    name = "round_robin"

    def __init__(self) -> None:
        self._counter = 0

    def select(self, workers: Sequence[Worker], info: RoutingSource) -> Worker | None:
        n = len(workers)
        if not n:
            return None
        index = self._counter % n
        self._counter += 1
        return workers[index]

    def reset(self) -> None:
        self._counter = 0


class PowerOfTwoPolicy(Policy):
    """Two distinct random samples; the lower in-flight load wins, a tie goes to the first sample."""

    name = "power_of_two"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def select(self, workers: Sequence[Worker], info: RoutingSource) -> Worker | None:
        n = len(workers)
        if n <= 1:
            return workers[0] if n else None
        rand = self._rng.random
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        if j >= i:
            j += 1
        a, b = workers[i], workers[j]
        return b if b.load < a.load else a
