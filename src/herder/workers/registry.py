"""The worker registry: every registered worker, indexed by model for O(candidates) lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from herder.workers.breaker import BreakerState
from herder.workers.worker import Worker, WorkerStatus

READY = WorkerStatus.READY
CLOSED = BreakerState.CLOSED

MembershipHook = Callable[[], None]


class WorkerRegistry:
    """Workers by id, with a per-model candidate index rebuilt on membership changes (rare)."""

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.version = 0
        self._by_model: dict[tuple[str, str], tuple[Worker, ...]] = {}
        self._wildcard: dict[str, tuple[Worker, ...]] = {}
        self._all: dict[str, tuple[Worker, ...]] = {}
        self.on_change: list[MembershipHook] = []

    def add(self, worker: Worker) -> None:
        self.workers[worker.id] = worker
        self._rebuild()

    def remove(self, worker_id: str) -> Worker | None:
        worker = self.workers.pop(worker_id, None)
        if worker is not None:
            self._rebuild()
        return worker

    def get(self, worker_id: str) -> Worker | None:
        return self.workers.get(worker_id)

    def find_by_url(self, url: str) -> Worker | None:
        url = url.rstrip("/")
        for worker in self.workers.values():
            if worker.url == url:
                return worker
        return None

    def _rebuild(self) -> None:
        by_model: dict[tuple[str, str], list[Worker]] = {}
        wildcard: dict[str, list[Worker]] = {}
        every: dict[str, list[Worker]] = {}
        for worker in self.workers.values():
            every.setdefault(worker.worker_type, []).append(worker)
            if not worker.models:
                wildcard.setdefault(worker.worker_type, []).append(worker)
            for model in worker.models:
                by_model.setdefault((worker.worker_type, model), []).append(worker)
        self._wildcard = {k: tuple(v) for k, v in wildcard.items()}
        self._all = {k: tuple(v) for k, v in every.items()}
        self._by_model = {
            key: tuple(v) + self._wildcard.get(key[0], ()) for key, v in by_model.items()
        }
        self.version += 1
        for hook in self.on_change:
            hook()

    def known_model(self, model: str, worker_type: str = "regular") -> bool:
        """Whether any worker (ready or not) of this type serves `model`."""
        return (worker_type, model) in self._by_model or bool(self._wildcard.get(worker_type))

    def workers_for(self, model: str | None, worker_type: str = "regular") -> tuple[Worker, ...]:
        """Every worker of `worker_type` that serves `model` (all of them when model is None)."""
        if model is None:
            return self._all.get(worker_type, ())
        found = self._by_model.get((worker_type, model))
        if found is not None:
            return found
        return self._wildcard.get(worker_type, ())

    def available(self, model: str | None, worker_type: str = "regular") -> list[Worker]:
        """Routable candidates: Ready and breaker closed/half-open. O(candidates)."""
        # Worker.is_available inlined for the common case (Ready, breaker closed): this runs once per request.
        return [w for w in self.workers_for(model, worker_type)
                if w.status is READY and (w.breaker.state is CLOSED or w.breaker.can_execute())]

    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for worker in self.workers.values():
            if worker.status is WorkerStatus.DRAINING:
                continue
            for model in worker.models:
                seen.setdefault(model, None)
        return list(seen)

    def any_ready(self, worker_types: Iterable[str] = ("regular",)) -> bool:
        types = set(worker_types)
        return any(w.status is WorkerStatus.READY for w in self.workers.values() if w.worker_type in types)

    def __len__(self) -> int:
        return len(self.workers)
