"""The regular HTTP proxy router: select a worker, send the original bytes, retry, relay the response.

Each request is a `ProxyCall` (routing/proxy.py), a callback-driven state machine: no task or future per request
on the hot path. Retries happen only before any response byte reached the client; each attempt selects again
(avoiding the worker that just failed when another is available) and waits backoff+jitter or the worker's
Retry-After. The relay writes what each upstream read delivered as one client write, pauses the upstream socket
while the client is slow, and closes the upstream connection the moment the client leaves. The lease (in-flight
load) is taken at selection and released exactly once per attempt. `_relay` is the awaitable relay the PD router
uses for exchanges it started itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from herder.policies import PolicyRegistry
from herder.routing.context import RequestContext
from herder.routing.proxy import DROPPED_RESPONSE_HEADERS, ProxyCall
from herder.routing.retry import RETRYABLE_STATUSES, RetryConfig
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Reply
from herder.workers.deadlines import DeadlineSweeper, tick_for
from herder.workers.pool import Exchange, UpstreamError
from herder.workers.registry import WorkerRegistry
from herder.workers.worker import Worker

log = logging.getLogger("herder.router")

_DROP_RESPONSE_HEADERS = DROPPED_RESPONSE_HEADERS


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

    def _record(self, worker: Worker, success: bool) -> None:
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
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished(_: ProxyCall) -> None:
            if not done.done():
                done.set_result(None)

        call = self.start(ctx, reply, finished)
        try:
            await done
        except asyncio.CancelledError:
            call.cancel()
            raise
        if call.error is not None:
            raise call.error

    async def _backoff(self, ctx: RequestContext, worker: Worker, attempt: int, retry_after: bytes | None) -> None:
        delay = self.retry.delay_secs(attempt, retry_after)
        if self.hooks.on_retry is not None:
            self.hooks.on_retry(ctx, worker, attempt, delay)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _relay(self, ctx: RequestContext, worker: Worker, ex: Exchange, reply: Reply) -> None:
        """Relay the response; the outcome (for the breaker) is known only when the body is complete."""
        status = ex.status
        content_type = ex.header(b"content-type") or b"application/json"
        headers = [(k, v) for k, v in ex.headers if k not in _DROP_RESPONSE_HEADERS]
        watch = _Watchdog(self.sweeper, ex, self.stall_timeout, self.request_timeout)
        reply.on_close = watch.client_gone
        if not ex.streaming:
            try:
                await ex.done
            except UpstreamError as exc:
                watch.cancel()
                if watch.client_left:
                    return
                self._record(worker, False)
                timed_out = watch.reason is not None
                raise HttpError(504 if timed_out else 502,
                                errors.UPSTREAM_TIMEOUT if timed_out else errors.UPSTREAM_CONNECTION_FAILED,
                                f"Upstream worker {worker.url} failed mid-response: {watch.reason or exc}") from exc
            watch.cancel()
            self._record(worker, status not in RETRYABLE_STATUSES)
            if self.hooks.on_outcome is not None:
                self.hooks.on_outcome(ctx, worker, status, None)
            body = ex.body()
            ctx.usage_tail = body
            reply.send(status, body, headers, content_type)
            return

        reply.start_stream(status, headers, content_type)
        reply.on_pause = ex.pause_reading
        reply.on_resume = ex.resume_reading
        first_chunk = self.hooks.on_first_chunk

        def sink(data: bytes) -> None:
            nonlocal first_chunk
            watch.last_activity = time.monotonic()
            reply.write_nowait(data)
            if first_chunk is not None:
                first_chunk(ctx)
                first_chunk = None
            ctx.meter(data)

        ex.set_sink(sink)
        error: str | None = None
        try:
            await ex.done
        except UpstreamError as exc:
            error = watch.reason or str(exc)
        finally:
            watch.cancel()
            reply.on_pause = reply.on_resume = None
        if watch.client_left:
            ctx.error_code = errors.CLIENT_DISCONNECTED
            self._record(worker, True)
            if self.hooks.on_outcome is not None:
                self.hooks.on_outcome(ctx, worker, 499, errors.CLIENT_DISCONNECTED)
            return
        if error is not None:
            # The stream died mid-way: that is a failure, not a success, and the client is told in-band.
            self._record(worker, False)
            code = errors.UPSTREAM_TIMEOUT if watch.reason else errors.UPSTREAM_STREAM_ERROR
            ctx.error_code = code
            if self.hooks.on_outcome is not None:
                self.hooks.on_outcome(ctx, worker, 504 if watch.reason else 502, code)
            reply.end_stream(errors.sse_error_event(f"Upstream stream failed: {error}", code,
                                                    504 if watch.reason else 502))
            return
        self._record(worker, status not in RETRYABLE_STATUSES)
        if self.hooks.on_outcome is not None:
            self.hooks.on_outcome(ctx, worker, status, None)
        reply.end_stream()


class _Watchdog:
    """Stall (silence between chunks) and total-time limits for one relay, plus client-gone handling.
    Checked by the router's DeadlineSweeper: no timer per request."""

    __slots__ = ("client_left", "ex", "last_activity", "reason", "stall", "sweeper", "total_deadline")

    def __init__(self, sweeper: DeadlineSweeper, ex: Exchange, stall: float, total: float) -> None:
        self.sweeper = sweeper
        self.ex = ex
        self.stall = stall
        now = time.monotonic()
        self.total_deadline = now + total if total else 0.0
        self.last_activity = now
        self.reason: str | None = None
        self.client_left = False
        if stall or total:
            sweeper.add(self)

    @property
    def deadline(self) -> float:
        stall_deadline = self.last_activity + self.stall if self.stall else 0.0
        if stall_deadline and self.total_deadline:
            return min(stall_deadline, self.total_deadline)
        return stall_deadline or self.total_deadline

    def expire(self) -> None:
        now = time.monotonic()
        if self.total_deadline and now >= self.total_deadline:
            self.reason = "request timeout exceeded"
        else:
            self.reason = f"no data from the worker for {self.stall:g} s"
        self.ex.abort()

    def client_gone(self) -> None:
        self.client_left = True
        self.ex.abort()

    def cancel(self) -> None:
        self.sweeper.discard(self)


def _pick_target(candidates: list[Worker], target: str) -> Worker | None:
    """`X-SMG-Target-Worker`: an index into the model's workers, a worker id, or a URL."""
    if target.isdigit():
        index = int(target)
        return candidates[index] if index < len(candidates) else None
    for worker in candidates:
        if worker.id == target or worker.url == target.rstrip("/"):
            return worker
    return None
