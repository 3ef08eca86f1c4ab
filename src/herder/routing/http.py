"""The regular HTTP proxy router: select a worker, send the original bytes, retry, relay the response.

Each request is a `ProxyCall` (routing/proxy.py), a callback-driven state machine: no task or future per request
on the hot path. Retries happen only before any response byte reached the client; each attempt selects again
(avoiding the worker that just failed when another is available) and waits backoff+jitter or the worker's
Retry-After. The relay writes what each upstream read delivered as one client write, pauses the upstream socket
while the client is slow, and closes the upstream connection the moment the client leaves. The lease (in-flight
load) is taken at selection and released exactly once per attempt. `relay` relays an exchange the PD router
started itself through the same state machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from herder.policies import PolicyRegistry
from herder.routing.context import RequestContext
from herder.routing.proxy import ProxyCall
from herder.routing.retry import RetryConfig
from herder.server.http import Reply
from herder.workers.deadlines import DeadlineSweeper, tick_for
from herder.workers.pool import Exchange, ExchangeListener
from herder.workers.registry import WorkerRegistry
from herder.workers.worker import Worker

if TYPE_CHECKING:
    from herder.routing.pd_legs import Lease

log = logging.getLogger("herder.router")


class RelayHooks:
    """Observability hooks a caller may set (metrics). Defaults do nothing."""

    __slots__ = ("on_attempt_failed", "on_exhausted", "on_first_chunk", "on_outcome", "on_retry", "on_selected",
                 "on_sent")

    def __init__(self) -> None:
        self.on_selected: Callable[[RequestContext, Worker], None] | None = None
        self.on_outcome: Callable[[RequestContext, Worker, int, str | None], None] | None = None
        self.on_retry: Callable[[RequestContext, Worker, int, float], None] | None = None
        self.on_first_chunk: Callable[[RequestContext], None] | None = None
        self.on_attempt_failed: Callable[[RequestContext, Worker, str], None] | None = None
        self.on_exhausted: Callable[[RequestContext, Worker], None] | None = None
        # After a request went to a worker: the gateway has time while the worker works (deferred bookkeeping).
        self.on_sent: Callable[[], None] | None = None


class HttpRouter:
    """Proxies OpenAI / SGLang requests to HTTP workers."""

    def __init__(self, registry: WorkerRegistry, policies: PolicyRegistry, retry: RetryConfig, *,
                 request_timeout: float, stall_timeout: float, hooks: RelayHooks | None = None) -> None:
        self.registry = registry
        self.policies = policies
        self.retry = retry
        self.request_timeout = request_timeout
        self.stall_timeout = stall_timeout
        self.hooks = hooks or RelayHooks()
        self.on_breaker: Callable[[Worker, bool], None] | None = None
        self.sweeper = DeadlineSweeper(tick_for(request_timeout, stall_timeout))

    def record(self, worker: Worker, success: bool) -> None:
        """One outcome for the worker's breaker (and the outcome metric)."""
        worker.breaker.record(success)
        if self.on_breaker is not None:
            self.on_breaker(worker, success)

    def select(self, ctx: RequestContext, avoid: Worker | None) -> Worker | None:
        candidates = self.registry.available(ctx.model)
        if avoid is not None and len(candidates) > 1 and avoid in candidates:
            candidates.remove(avoid)
        if not candidates:
            return None
        target = ctx.target_worker
        if target is not None:
            return _pick_target(candidates, target)
        policy = self.policies.get(ctx.model)
        worker = policy.select(candidates, ctx)
        if worker is not None:
            worker.processed += 1
        return worker

    def start(self, ctx: RequestContext, reply: Reply, on_done: Callable[[ProxyCall], None]) -> ProxyCall:
        """Proxy one request without a task: `on_done(call)` runs once the response was relayed or failed
        (`call.error`: the HttpError to answer with)."""
        call = ProxyCall(self, ctx, reply, on_done)
        call.start()
        return call

    async def route(self, ctx: RequestContext, reply: Reply) -> None:
        """`start` for callers that await (PD's fallback, the gateway's slow path). Raises the call's HttpError."""
        await self._awaited(ProxyCall(self, ctx, reply, _ignore), ProxyCall.start)

    async def relay(self, ctx: RequestContext, lease: Lease, ex: Exchange, reply: Reply,
                    listener: Callable[[ProxyCall], ExchangeListener] | None = None) -> None:
        """Relay `ex`, a response whose head arrived (a PD leg), as a proxied response is relayed: backpressure,
        stall and total timeouts, client-gone, the breaker outcome. The lease's load unit goes with it (released
        when the relay ends); `listener(call)` may put a body transform between the exchange and the call.
        Raises the HttpError to answer with when no response could be relayed."""
        worker = lease.hand_over()

        def adopt(call: ProxyCall) -> None:
            call.adopt(worker, ex, listener(call) if listener is not None else None)

        await self._awaited(ProxyCall(self, ctx, reply, _ignore), adopt)

    @staticmethod
    async def _awaited(call: ProxyCall, begin: Callable[[ProxyCall], None]) -> None:
        """Run a call to its end from a task: cancelling the task cancels the call."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished(_: ProxyCall) -> None:
            if not done.done():
                done.set_result(None)

        call.on_done = finished
        begin(call)
        try:
            await done
        except asyncio.CancelledError:
            call.cancel()
            raise
        if call.error is not None:
            raise call.error

    async def backoff(self, ctx: RequestContext, worker: Worker, attempt: int, retry_after: bytes | None) -> None:
        """Wait before retry `attempt + 1` (backoff + jitter, or the worker's Retry-After), for callers that
        await (PD); a proxy call waits on a loop timer instead."""
        delay = self.retry.delay_secs(attempt, retry_after)
        if self.hooks.on_retry is not None:
            self.hooks.on_retry(ctx, worker, attempt, delay)
        if delay > 0:
            await asyncio.sleep(delay)

def _ignore(_: ProxyCall) -> None:
    pass


def _pick_target(candidates: list[Worker], target: str) -> Worker | None:
    """`X-SMG-Target-Worker`: an index into the model's workers, a worker id, or a URL."""
    if target.isdigit():
        index = int(target)
        return candidates[index] if index < len(candidates) else None
    for worker in candidates:
        if worker.id == target or worker.url == target.rstrip("/"):
            return worker
    return None
