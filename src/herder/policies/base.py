"""The policy interface: pick one worker among the routable candidates of a model.

Policies are per model (a `PolicyRegistry` keeps one instance per model), O(candidates) per request, and never
copy the fleet. `RoutingInfo` carries what a policy may need, computed lazily (the routing text is only built for
policies that read it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from herder.workers.worker import Worker


class RoutingSource(Protocol):
    """What a policy reads from a request: its routing text and, on the gRPC path, its token ids. A
    `RoutingInfo`, or the HTTP path's `RequestContext` itself (no wrapper object per request)."""

    @property
    def text(self) -> str: ...

    @property
    def tokens(self) -> Sequence[int] | None: ...


class RoutingInfo:
    """What the request offers to a policy: routing text (lazy), token ids (gRPC) and headers."""

    __slots__ = ("_text", "_text_fn", "headers", "tokens")

    def __init__(self, text_fn: Callable[[], str] | None = None, tokens: Sequence[int] | None = None,
                 headers: list[tuple[bytes, bytes]] | Any | None = None) -> None:
        """`headers`: a list of (lowercase name, value), or any object with `header(name)` (a RequestContext),
        which is only asked when a policy reads a header."""
        self._text_fn = text_fn
        self._text: str | None = None
        self.tokens = tokens
        self.headers = headers

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._text_fn() if self._text_fn is not None else ""
        return self._text

    def header(self, name: bytes) -> bytes | None:
        source = self.headers
        if source is None:
            return None
        if isinstance(source, list):
            for key, value in source:
                if key == name:
                    return value
            return None
        found: bytes | None = source.header(name)
        return found


class Policy(ABC):
    """Selects a worker; `select` receives only available workers (Ready, breaker not open)."""

    name: ClassVar[str]

    @abstractmethod
    def select(self, workers: Sequence[Worker], info: RoutingSource) -> Worker | None:
        """The chosen worker, or None when `workers` is empty."""

    def on_workers_changed(self, workers: Sequence[Worker]) -> None:  # noqa: B027 - optional hook
        """Membership changed (added/removed workers)."""

    def maintenance(self) -> None:  # noqa: B027 - optional hook
        """Periodic housekeeping (cache_aware eviction)."""


def least_loaded(workers: Sequence[Worker]) -> Worker:
    """Lowest in-flight load; ties broken by fewer processed requests, then position (as SMG)."""
    best = workers[0]
    best_key = (best.load, best.processed)
    for worker in workers[1:]:
        key = (worker.load, worker.processed)
        if key < best_key:
            best, best_key = worker, key
    return best
