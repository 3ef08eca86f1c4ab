"""Drive a workload against a client: closed loop (fixed concurrency) or open loop (Poisson arrivals).

The run stops issuing requests after `num_requests` or `duration` seconds (whichever comes first) and then
waits for the requests in flight; the measured window runs from the first send to the last completion.
Warm-up requests (drawn from a separate workload) are sent first at the same concurrency and discarded.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from herder.loadgen.client import HttpClient, RequestResult
from herder.loadgen.workloads import BenchRequest, Workload

__all__ = ["Progress", "RequestRecord", "RunConfig", "RunResult", "run"]

perf = time.perf_counter

# Default number of requests when neither a count nor a duration is given.
DEFAULT_NUM_REQUESTS = 200
# Open loop: requests allowed in flight when no cap is given (arrivals beyond it wait for a slot).
DEFAULT_MAX_IN_FLIGHT = 1024


@dataclass(slots=True)
class RunConfig:
    """How to send: concurrency or request rate, how many / how long, warm-up."""

    concurrency: int = 8
    rps: float | None = None
    max_in_flight: int | None = None
    num_requests: int | None = None
    duration: float | None = None
    warmup: int = 0
    seed: int = 0
    progress: bool = False

    def validate(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rps is not None and self.rps <= 0:
            raise ValueError("rps must be > 0")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.num_requests is not None and self.num_requests < 1:
            raise ValueError("num_requests must be >= 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be > 0")
        if self.warmup < 0:
            raise ValueError("warmup must be >= 0")

    def request_limit(self) -> int | None:
        """The request budget: the given count, none with only a duration, else the default."""
        if self.num_requests is not None:
            return self.num_requests
        return None if self.duration is not None else DEFAULT_NUM_REQUESTS

    def in_flight_cap(self) -> int:
        """Closed loop: the concurrency. Open loop: `max_in_flight`, else `DEFAULT_MAX_IN_FLIGHT`."""
        if self.rps is None:
            return self.concurrency
        return self.max_in_flight or DEFAULT_MAX_IN_FLIGHT


@dataclass(slots=True)
class RequestRecord:
    """One measured request. `start` is seconds since the run began; other times are seconds."""

    index: int
    start: float
    status: int
    ok: bool
    error: str | None
    e2e: float
    ttft: float | None
    itls: list[float]
    content_events: int
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    worker: str | None
    prompt_words: int
    group: int | None = None
    conversation: int | None = None
    turn: int = 0


@dataclass(slots=True)
class RunResult:
    """All records of the measured phase and its wall-clock length."""

    records: list[RequestRecord] = field(default_factory=list)
    duration: float = 0.0
    warmup_requests: int = 0
    connections_opened: int = 0


def _record(req: BenchRequest, res: RequestResult, t0: float) -> RequestRecord:
    return RequestRecord(
        index=req.index,
        start=res.start - t0,
        status=res.status,
        ok=res.ok,
        error=res.error,
        e2e=res.e2e,
        ttft=res.ttft,
        itls=res.itls,
        content_events=res.content_events,
        prompt_tokens=res.prompt_tokens,
        completion_tokens=res.completion_tokens,
        cached_tokens=res.cached_tokens,
        worker=res.worker,
        prompt_words=req.prompt_words,
        group=req.group,
        conversation=req.conversation,
        turn=req.turn,
    )


class Progress:
    """A one-line text progress bar on a stream (stderr), redrawn a few times per second."""

    def __init__(self, out: TextIO, total: int | None, duration: float | None, label: str = "") -> None:
        self.out = out
        self.total = total
        self.duration = duration
        self.label = label
        self.done = 0
        self.errors = 0
        self.t0 = perf()

    def line(self) -> str:
        elapsed = perf() - self.t0
        if self.total is not None and (
            self.duration is None or self.done / self.total >= elapsed / self.duration
        ):
            frac, count = self.done / self.total, f"{self.done}/{self.total} req"
        elif self.duration is not None:
            frac, count = elapsed / self.duration, f"{self.done} req"
        else:
            frac, count = 0.0, f"{self.done} req"
        frac = min(1.0, max(0.0, frac))
        width = 24
        filled = int(frac * width)
        bar = "#" * filled + "." * (width - filled)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return f"\r{self.label}[{bar}] {count}  {rate:6.1f} req/s  {self.errors} err  {elapsed:6.1f} s "

    def draw(self) -> None:
        self.out.write(self.line())
        self.out.flush()

    def close(self) -> None:
        self.draw()
        self.out.write("\n")
        self.out.flush()

    async def tick(self, interval: float = 0.25) -> None:
        while True:
            self.draw()
            await asyncio.sleep(interval)


class _Phase:
    """Shared state of one phase (warm-up or measured): request budget, deadline, records."""

    def __init__(
        self,
        client: HttpClient,
        workload: Workload,
        limit: int | None,
        deadline: float | None,
        progress: Progress | None,
    ) -> None:
        self.client = client
        self.workload = workload
        self.limit = limit
        self.deadline = deadline
        self.progress = progress
        self.stop: asyncio.Event | None = None
        self.issued = 0
        self.records: list[RequestRecord] = []
        self.t0 = perf()
        self.t_last = self.t0

    def more(self) -> bool:
        if self.limit is not None and self.issued >= self.limit:
            return False
        if self.stop is not None and self.stop.is_set():
            return False
        return self.deadline is None or perf() < self.deadline

    def draw(self) -> BenchRequest:
        """Take the next request from the workload and count it against the budget."""
        self.issued += 1
        return self.workload.next()

    async def one(self, req: BenchRequest) -> None:
        """Send one request and record it."""
        res = await self.client.post(req.path, req.body, stream=req.stream)
        self.workload.complete(req, res.text if res.ok else None)
        self.records.append(_record(req, res, self.t0))
        self.t_last = perf()
        if self.progress is not None:
            self.progress.done += 1
            self.progress.errors += not res.ok

    async def closed_loop(self, concurrency: int) -> None:
        async def worker() -> None:
            while self.more():
                await self.one(self.draw())

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open_loop(self, rps: float, cap: int, rng: random.Random) -> None:
        sem = asyncio.Semaphore(cap)
        tasks: set[asyncio.Task[None]] = set()

        async def guarded(req: BenchRequest) -> None:
            try:
                await self.one(req)
            finally:
                sem.release()

        t_next = self.t0
        try:
            while self.more():
                delay = t_next - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if not self.more():
                        break
                # When `cap` requests are in flight the arrival waits for a slot (and later ones catch up).
                await sem.acquire()
                if not self.more():  # the deadline may pass while waiting for a slot
                    sem.release()
                    break
                # Drawn (and counted) at arrival time, before the task runs: the loop cannot overshoot the
                # budget, and arrival order is draw order.
                task = asyncio.create_task(guarded(self.draw()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                t_next += rng.expovariate(rps)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()


async def run(
    client: HttpClient,
    workload: Workload,
    cfg: RunConfig,
    *,
    warmup_workload: Workload | None = None,
    progress_out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """Run warm-up then the measured phase; returns every measured request's record.

    Setting `stop` ends the run early like a reached budget: no new requests, the ones in flight finish.
    """
    cfg.validate()
    out = progress_out if progress_out is not None else sys.stderr
    result = RunResult()
    if cfg.warmup and warmup_workload is not None:
        warm = _Phase(client, warmup_workload, cfg.warmup, None, None)
        warm.stop = stop
        await warm.closed_loop(min(cfg.concurrency, cfg.warmup))
        result.warmup_requests = len(warm.records)
    opened_before = client.connections_opened

    limit = cfg.request_limit()
    t_start = perf()
    deadline = t_start + cfg.duration if cfg.duration is not None else None
    progress = Progress(out, limit, cfg.duration) if cfg.progress else None
    ticker = asyncio.create_task(progress.tick()) if progress is not None else None
    phase = _Phase(client, workload, limit, deadline, progress)
    phase.stop = stop
    try:
        if cfg.rps is None:
            await phase.closed_loop(cfg.concurrency)
        else:
            rng = random.Random(f"{cfg.seed}:arrivals")
            await phase.open_loop(cfg.rps, cfg.in_flight_cap(), rng)
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.wait([ticker])
        if progress is not None:
            progress.close()
    result.records = phase.records
    result.duration = phase.t_last - phase.t0
    result.connections_opened = client.connections_opened - opened_before
    return result
