"""The legs of a PD request over HTTP: leases, the leg send, the exchange views the relay sees.

Shared by the SGLang flow (`pd.py`) and the vLLM flow (`pd_vllm.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herder.routing.pd_body import LogprobStreamMerger, merge_json
from herder.server.errors import HttpError
from herder.workers.pool import Exchange, UpstreamPool
from herder.workers.worker import Worker


class Lease:
    """One worker's in-flight load unit for one attempt; `release()` is idempotent (exactly-once)."""

    __slots__ = ("background", "released", "worker")

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.released = False
        self.background = False  # handed to a background drain, which releases it
        worker.load += 1

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.worker.load -= 1


@dataclass(slots=True)
class Retry:
    """An attempt that failed before the client saw anything: which leg, the error if it is the last one."""

    failed: Worker
    error: HttpError
    retry_after: bytes | None = None


async def send(pool: UpstreamPool, data: bytes, timeout: float | None, box: list[Exchange]) -> Exchange:
    """One PD leg: `pool.request` with each exchange put into `box` as soon as it exists, so a caller that
    gives up on this leg (the other leg failed, the client left) can close its connection (`abort_all`)."""
    return await pool.request(data, timeout, started=box)


def abort(ex: Exchange) -> None:
    """Close an exchange's connection, unless the exchange is complete: its connection may already carry
    another request (back in the pool; `done` is set in the same callback that releases it)."""
    if not ex.done.done():
        ex.abort()


def abort_all(box: list[Exchange]) -> None:
    """Close the connections of an abandoned leg."""
    for ex in box:
        abort(ex)


class TransformedExchange:
    """An exchange seen through a body transform (the logprob merge), for the HTTP router's relay."""

    __slots__ = ("_body", "_merger", "ex", "on_first")

    def __init__(
        self, ex: Exchange, prefill: dict[int, list[Any]], on_first: Callable[[], None] | None
    ) -> None:
        self.ex = ex
        self._merger = LogprobStreamMerger(prefill)
        self._body = prefill
        self.on_first = on_first

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ex, name)

    def body(self) -> bytes:
        return merge_json(self.ex.body(), self._body)

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        merger = self._merger

        def transformed(data: bytes) -> None:
            if self.on_first is not None:
                self.on_first()
                self.on_first = None
            out = merger.feed(data)
            if out:
                sink(out)

        def finished(fut: asyncio.Future[None]) -> None:
            # Whatever a well-formed stream left unterminated goes out as-is before the relay ends it.
            if not fut.cancelled() and fut.exception() is None:
                rest = merger.finish()
                if rest:
                    sink(rest)

        self.ex.done.add_done_callback(finished)
        self.ex.set_sink(transformed)


class FirstChunk:
    """An exchange whose first body chunk is reported (PD TTFT of a stream)."""

    __slots__ = ("ex", "on_first")

    def __init__(self, ex: Exchange, on_first: Callable[[], None]) -> None:
        self.ex = ex
        self.on_first: Callable[[], None] | None = on_first

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ex, name)

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        def first(data: bytes) -> None:
            if self.on_first is not None:
                self.on_first()
                self.on_first = None
            sink(data)

        self.ex.set_sink(first)


def discard(data: bytes) -> None:
    pass
