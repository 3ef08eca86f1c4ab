"""Worker lifecycle: registration (probe + model discovery), periodic health checks, draining removal.

Status machine (SMG, spec 4.3): a registered worker that answered its health endpoint and `/v1/models` is Ready;
Ready -> NotReady after `failure_threshold` consecutive probe failures; NotReady -> Ready after
`success_threshold` successes; NotReady -> Failed after 3 x failure_threshold failures; Pending -> Failed after
10 x failure_threshold probes. Failed workers keep being probed, at a slower pace (every 3 intervals), and come
back to Ready when they answer, unless `remove_unhealthy` deregisters them. Removal drains: the worker becomes
Draining (not routable), in-flight requests finish, then it leaves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from herder.workers.breaker import BreakerConfig
from herder.workers.pool import UpstreamError, fetch
from herder.workers.registry import WorkerRegistry
from herder.workers.worker import HealthConfig, Worker, WorkerSpec, WorkerStatus

log = logging.getLogger("herder.workers")

StatusHook = Callable[[Worker, WorkerStatus, WorkerStatus], None]


class Prober(Protocol):
    """How the manager talks to one kind of worker (HTTP, gRPC): health probe and metadata discovery."""

    async def probe(self, worker: Worker) -> bool:
        """One health check; True when healthy."""

    async def discover(self, worker: Worker) -> None:
        """Fill in models and metadata after a successful probe (registration, recovery)."""

    async def close(self, worker: Worker) -> None:
        """Release what the prober opened for this worker (channels)."""


@dataclass(slots=True)
class ManagerConfig:
    breaker: BreakerConfig
    health: HealthConfig
    pool_idle_timeout: float = 3.0
    remove_unhealthy: bool = False
    startup_check_interval: float = 1.0
    startup_timeout: float = 1800.0
    drain_timeout: float = 180.0


class WorkerManager:
    """Owns registration jobs and the health-check loop."""

    def __init__(self, registry: WorkerRegistry, config: ManagerConfig) -> None:
        self.registry = registry
        self.config = config
        self.on_status: list[StatusHook] = []
        self.on_probe: list[Callable[[Worker, bool], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self.health_rounds = 0  # health-check rounds completed (every registered worker probed, or skipped)
        self.jobs: dict[str, str] = {}  # worker id -> job status (pending/running/completed/failed: msg)
        self.probers: dict[str, Prober] = {"http": HttpProber(config.health)}

    # -- registration ---------------------------------------------------------------------------------------
    def create(self, spec: WorkerSpec) -> Worker:
        worker = Worker(spec, breaker=self.config.breaker, health=self.config.health,
                        pool_idle_timeout=self.config.pool_idle_timeout)
        return worker

    async def register(self, spec: WorkerSpec, *, wait: bool = True) -> Worker:
        """Add a worker to the registry (Pending) and probe it; with `wait`, return once it is Ready or
        registration failed. Without, registration continues in the background (the admin API's 202 job)."""
        existing = self.registry.find_by_url(spec.url)
        if existing is not None:
            raise ValueError(f"worker {spec.url} is already registered")
        worker = self.create(spec)
        self.registry.add(worker)
        self.jobs[worker.id] = "pending"
        job = self._spawn(self._registration_job(worker))
        if wait:
            await asyncio.shield(job)
        return worker

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _registration_job(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.startup_timeout
        self.jobs[worker.id] = "running"
        while self.registry.get(worker.id) is worker:
            ok = await self._discover(worker)
            if ok:
                self._set_status(worker, WorkerStatus.READY)
                self.jobs[worker.id] = "completed"
                self.registry.add(worker)  # models may have changed: rebuild the index
                log.info("worker %s ready (models: %s)", worker.url, ", ".join(worker.models) or "any")
                return
            if loop.time() >= deadline:
                self._set_status(worker, WorkerStatus.FAILED)
                self.jobs[worker.id] = "failed: worker did not become healthy before the startup timeout"
                log.warning("worker %s failed to register", worker.url)
                return
            await asyncio.sleep(self.config.startup_check_interval)

    async def _discover(self, worker: Worker) -> bool:
        """Health probe, then metadata (models) from the worker's prober."""
        if not await self.probe(worker):
            return False
        await self._prober(worker).discover(worker)
        return True

    def _prober(self, worker: Worker) -> Prober:
        prober = self.probers.get(worker.connection_mode)
        if prober is None:
            raise ValueError(f"no prober for connection mode {worker.connection_mode!r}")
        return prober

    async def probe(self, worker: Worker) -> bool:
        ok = await self._prober(worker).probe(worker)
        for hook in self.on_probe:
            hook(worker, ok)
        return ok

    # -- health loop ------------------------------------------------------------------------------------------
    def start_health_checks(self) -> None:
        if self.config.health.disable_health_check or self._health_task is not None:
            return
        self._health_task = self._spawn(self._health_loop())

    async def _health_loop(self) -> None:
        interval = self.config.health.check_interval_secs
        while True:
            await asyncio.sleep(interval)
            rounds = self.health_rounds + 1
            targets = []
            for worker in list(self.registry.workers.values()):
                if worker.status is WorkerStatus.DRAINING:
                    continue
                if worker.status is WorkerStatus.FAILED and rounds % 3:
                    continue  # failed workers are probed at a third of the pace, but never given up on
                if self.jobs.get(worker.id) == "running":
                    continue  # registration is still probing it
                targets.append(worker)
            if targets:
                await asyncio.gather(*(self.check(w) for w in targets))
            self.health_rounds = rounds

    async def check(self, worker: Worker) -> None:
        """One health probe and the status transition it causes."""
        ok = await self.probe(worker)
        cfg = self.config.health
        if ok:
            worker.health_failures = 0
            worker.health_successes += 1
            if worker.status is not WorkerStatus.READY and worker.health_successes >= cfg.success_threshold:
                if worker.status is WorkerStatus.FAILED or (not worker.models and not worker.spec.models):
                    await self._discover(worker)
                self._set_status(worker, WorkerStatus.READY)
                worker.breaker.reset()
                self.registry.add(worker)
            return
        worker.health_successes = 0
        worker.health_failures += 1
        fails = worker.health_failures
        status = worker.status
        if status is WorkerStatus.READY and fails >= cfg.failure_threshold:
            self._set_status(worker, WorkerStatus.NOT_READY)
        elif (status is WorkerStatus.NOT_READY and fails >= 3 * cfg.failure_threshold) or (status is WorkerStatus.PENDING and fails >= 10 * cfg.failure_threshold):
            self._fail(worker)

    def _fail(self, worker: Worker) -> None:
        self._set_status(worker, WorkerStatus.FAILED)
        if self.config.remove_unhealthy:
            log.warning("removing failed worker %s", worker.url)
            self.registry.remove(worker.id)
            self._release(worker)

    def _set_status(self, worker: Worker, status: WorkerStatus) -> None:
        old = worker.status
        if old is status:
            return
        worker.status = status
        if status is not WorkerStatus.READY:
            worker.health_successes = 0
        for hook in self.on_status:
            hook(worker, old, status)

    # -- removal --------------------------------------------------------------------------------------------------
    def remove(self, worker_id: str) -> Worker | None:
        """Start draining a worker: no new requests; removed once in-flight ones finish."""
        worker = self.registry.get(worker_id)
        if worker is None:
            return None
        self._set_status(worker, WorkerStatus.DRAINING)
        self.jobs[worker.id] = "draining"
        self._spawn(self._drain(worker))
        return worker

    async def _drain(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while worker.load > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.registry.get(worker.id) is worker:
            self.registry.remove(worker.id)
        self.jobs.pop(worker.id, None)
        self._release(worker)

    def _release(self, worker: Worker) -> None:
        worker.pool.close()
        prober = self.probers.get(worker.connection_mode)
        if prober is not None:
            self._spawn(prober.close(worker))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in self.registry.workers.values():
            worker.pool.close()
            prober = self.probers.get(worker.connection_mode)
            if prober is not None:
                with contextlib.suppress(Exception):
                    await prober.close(worker)


class HttpProber:
    """HTTP workers: `GET <health endpoint>`, then `GET /v1/models` (when the spec named no models)."""

    def __init__(self, health: HealthConfig) -> None:
        self.health = health

    async def probe(self, worker: Worker) -> bool:
        try:
            status, _ = await fetch(worker.pool, b"GET", self.health.endpoint, worker.host_header,
                                    headers=_auth(worker), timeout=self.health.timeout_secs)
            return 200 <= status < 300
        except UpstreamError:
            return False

    async def discover(self, worker: Worker) -> None:
        if worker.spec.models:
            return
        try:
            status, body = await fetch(worker.pool, b"GET", "/v1/models", worker.host_header,
                                       headers=_auth(worker), timeout=self.health.timeout_secs)
            if status == 200:
                data = orjson.loads(body).get("data") or []
                worker.models = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (UpstreamError, orjson.JSONDecodeError, AttributeError, TypeError):
            worker.models = []  # a worker that reports no models serves any model

    async def close(self, worker: Worker) -> None:
        worker.pool.close()


def _auth(worker: Worker) -> list[tuple[bytes, bytes]] | None:
    if worker.api_key:
        return [(b"authorization", b"Bearer " + worker.api_key.encode())]
    return None
