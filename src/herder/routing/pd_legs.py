"""The legs of a PD request over HTTP: leases, the leg send, the listeners a relayed leg passes through.

Shared by the SGLang flow (`pd.py`) and the vLLM flow (`pd_vllm.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herder.routing.pd_body import LogprobStreamMerger, merge_json
from herder.server.errors import HttpError
from herder.workers.pool import BaseExchange, Exchange, ExchangeListener, UpstreamError, UpstreamPool
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

    def hand_over(self) -> Worker:
        """The load unit goes to whoever relays the leg (`HttpRouter.relay`), which releases it; `release()`
        becomes a no-op."""
        self.released = True
        return self.worker


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


class FirstChunk:
    """Passes a relayed leg's events on to the relay, reporting when its first body bytes arrive (PD TTFT of a
    stream)."""

    __slots__ = ("inner", "on_first")

    def __init__(self, inner: ExchangeListener, on_first: Callable[[], None] | None) -> None:
        self.inner = inner
        self.on_first = on_first

    def on_head(self, ex: BaseExchange) -> None:
        self.inner.on_head(ex)

    def on_data(self, ex: BaseExchange, data: bytes) -> None:
        self._first()
        self.inner.on_data(ex, data)

    def on_end(self, ex: BaseExchange) -> None:
        self.inner.on_end(ex)

    def on_error(self, ex: BaseExchange, err: UpstreamError) -> None:
        self.inner.on_error(ex, err)

    def _first(self) -> None:
        on_first = self.on_first
        if on_first is not None:
            self.on_first = None
            on_first()


class MergedLogprobs(FirstChunk):
    """The decode leg seen through the logprob merge: the prefill's `input_token_logprobs` go in front of the
    decode's, in its JSON body or in its stream's events."""

    __slots__ = ("_merger", "_prefill")

    def __init__(self, inner: ExchangeListener, prefill: dict[int, list[Any]],
                 on_first: Callable[[], None] | None) -> None:
        super().__init__(inner, on_first)
        self._prefill = prefill
        self._merger = LogprobStreamMerger(prefill)

    def on_data(self, ex: BaseExchange, data: bytes) -> None:
        self._first()
        out = self._merger.feed(data)
        if out:
            self.inner.on_data(ex, out)

    def on_end(self, ex: BaseExchange) -> None:
        if ex.streaming:
            # Whatever a well-formed stream left unterminated goes out as-is before the relay ends it.
            rest = self._merger.finish()
            if rest:
                self.inner.on_data(ex, rest)
        else:
            ex.body_parts = [merge_json(ex.body(), self._prefill)]
        self.inner.on_end(ex)


def discard(data: bytes) -> None:
    pass
