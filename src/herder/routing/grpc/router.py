"""GrpcRouter: herder as the OpenAI server in front of tokens-in/tokens-out gRPC workers.

Per request: the endpoint module (chat, completions, generate, embeddings) prepares token ids and
GenerateParams; `open_stream` selects a worker with the model's policy on the token ids, takes a lease and
starts Generate, retrying on retryable statuses (UNAVAILABLE, transport errors, ...) until the first event
arrives, like the HTTP proxy retries until the first byte. The lease is released exactly once (`Stream.close`),
streams included; the breaker sees one outcome per attempt (client errors count as successes).

A client that disconnects cancels the handler task (`reply.on_close`), which cancels the Generate call; the
client layer then sends `Abort` to the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from herder.policies import PolicyRegistry, RoutingInfo
from herder.routing.context import RequestContext
from herder.routing.grpc.client import GrpcCallError
from herder.routing.grpc.prober import client_of
from herder.routing.grpc.runtimes import GenerateEvent
from herder.routing.grpc.sampling import GenerateParams
from herder.routing.grpc.state import GrpcState
from herder.routing.http import RelayHooks, _pick_target
from herder.routing.retry import RETRYABLE_STATUSES, RetryConfig
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import ClientDisconnected, Reply
from herder.workers.registry import WorkerRegistry
from herder.workers.worker import Worker

Handler = Callable[["GrpcRouter", RequestContext, Reply], Awaitable[None]]
SSE_DONE = b"data: [DONE]\n\n"
_rid_counter = itertools.count(1)


def _canceller(task: asyncio.Task[Any]) -> Callable[[], None]:
    def cancel() -> None:
        task.cancel()

    return cancel


def engine_request_id(ctx: RequestContext, part: int | None = None) -> str:
    """A unique engine-side request id derived from the client's request id (clients may reuse theirs)."""
    base = ctx.request_id.decode("latin-1")
    n = next(_rid_counter)
    return f"{base}.{n}" if part is None else f"{base}.{n}.{part}"


def http_error(exc: GrpcCallError, worker: Worker | None = None) -> HttpError:
    """A worker's gRPC status as the HTTP error the client gets."""
    status = exc.http_status
    if status == 400:
        code = errors.INVALID_REQUEST
    elif status == 503:
        code = errors.UPSTREAM_CONNECTION_FAILED
    elif status == 504:
        code = errors.UPSTREAM_TIMEOUT
    elif status == 404:
        code = errors.MODEL_NOT_FOUND
    elif status == 429:
        code = errors.RATE_LIMITED
    else:
        code = errors.UPSTREAM_ERROR
    where = f" ({worker.url})" if worker is not None and status >= 500 else ""
    return HttpError(status, code, f"Worker error{where}: {exc.grpc_code}: {exc.message}")


class Stream:
    """One running Generate call on a leased worker."""

    __slots__ = ("_released", "_router", "ctx", "events", "first", "worker")

    def __init__(
        self,
        router: GrpcRouter,
        ctx: RequestContext,
        worker: Worker,
        events: AsyncIterator[GenerateEvent],
        first: GenerateEvent | None,
    ) -> None:
        self._router = router
        self.ctx = ctx
        self.worker = worker
        self.events = events
        self.first = first
        self._released = False

    async def __aiter__(self) -> AsyncIterator[GenerateEvent]:
        if self.first is not None:
            first, self.first = self.first, None
            yield first
        async for event in self.events:
            yield event

    async def close(self, status: int, error_code: str | None = None) -> None:
        """Release the lease and record the outcome once; cancels (and aborts) a call still running."""
        if self._released:
            return
        self._released = True
        worker = self.worker
        worker.load -= 1
        try:
            await self.events.aclose()  # type: ignore[attr-defined]
        finally:
            self._router.outcome(self.ctx, worker, status, error_code)


class GrpcRouter:
    """Routes inference requests for models served by grpc:// workers."""

    def __init__(
        self,
        registry: WorkerRegistry,
        policies: PolicyRegistry,
        retry: RetryConfig,
        state: GrpcState,
        *,
        hooks: RelayHooks,
        request_timeout: float = 0.0,
    ) -> None:
        self.registry = registry
        self.policies = policies
        self.retry = retry
        self.state = state
        self.hooks = hooks
        self.request_timeout = request_timeout or None
        self.on_breaker: Callable[[Worker, bool], None] | None = None
        from herder.routing.grpc.chat import handle_chat
        from herder.routing.grpc.completions import handle_completions
        from herder.routing.grpc.embeddings import handle_embeddings
        from herder.routing.grpc.generate import handle_generate

        self.handlers: dict[str, Handler] = {
            "chat": handle_chat,
            "completions": handle_completions,
            "generate": handle_generate,
            "embeddings": handle_embeddings,
        }

    # -- entry ------------------------------------------------------------------------------------------------
    async def route(self, ctx: RequestContext, reply: Reply) -> None:
        handler = self.handlers.get(ctx.endpoint)
        if handler is None:
            raise HttpError(
                501, errors.INVALID_REQUEST, f"{ctx.path} is not supported for models served by gRPC workers"
            )
        task = asyncio.current_task()
        if task is not None:
            reply.on_close = _canceller(task)
        try:
            await handler(self, ctx, reply)
        except asyncio.CancelledError:
            if not reply.closed or task is None:
                raise
            task.uncancel()  # our own cancellation: the client left, which is not an error of ours
            ctx.error_code = errors.CLIENT_DISCONNECTED
        except ClientDisconnected:
            ctx.error_code = errors.CLIENT_DISCONNECTED
        finally:
            reply.on_close = None

    # -- selection and execution -----------------------------------------------------------------------------
    def select(self, ctx: RequestContext, tokens: list[int] | None, avoid: Worker | None) -> Worker | None:
        candidates = self.registry.available(ctx.model)
        if avoid is not None and len(candidates) > 1 and avoid in candidates:
            candidates.remove(avoid)
        if not candidates:
            return None
        if ctx.target_worker is not None:
            return _pick_target(candidates, ctx.target_worker)
        worker = self.policies.get(ctx.model).select(
            candidates, RoutingInfo(tokens=tokens, headers=ctx.headers)
        )
        if worker is not None:
            worker.processed += 1
        return worker

    def _no_workers(self, ctx: RequestContext) -> HttpError:
        return HttpError(
            503,
            errors.NO_AVAILABLE_WORKERS,
            f"No available workers for model '{ctx.model}'" if ctx.model else "No available workers",
        )

    def record(self, worker: Worker, success: bool) -> None:
        worker.breaker.record(success)
        if self.on_breaker is not None:
            self.on_breaker(worker, success)

    def outcome(self, ctx: RequestContext, worker: Worker, status: int, error_code: str | None) -> None:
        """The request's final outcome on `worker` (breaker + metrics)."""
        self.record(worker, status not in RETRYABLE_STATUSES)
        if self.hooks.on_outcome is not None:
            self.hooks.on_outcome(ctx, worker, status, error_code)

    async def open_stream(self, ctx: RequestContext, params: GenerateParams, reply: Reply) -> Stream:
        """Select, lease, start Generate and wait for its first event, retrying before that first event."""
        attempts = self.retry.attempts
        failed: Worker | None = None
        last: HttpError | None = None
        hooks = self.hooks
        for attempt in range(attempts):
            worker = self.select(ctx, params.input_ids, failed)
            if worker is None:
                raise last or self._no_workers(ctx)
            if hooks.on_selected is not None:
                hooks.on_selected(ctx, worker)
            worker.load += 1
            events = client_of(worker, self.state.config.backend).generate(
                params, timeout=self.request_timeout
            )
            try:
                first: GenerateEvent | None = await events.__anext__()
            except StopAsyncIteration:
                first = None
            except GrpcCallError as exc:
                worker.load -= 1
                last = http_error(exc, worker)
                retryable = exc.http_status in RETRYABLE_STATUSES
                self.record(worker, not retryable)
                if hooks.on_attempt_failed is not None and retryable:
                    hooks.on_attempt_failed(ctx, worker, last.code)
                if retryable and attempt + 1 < attempts and not reply.closed:
                    failed = worker
                    delay = self.retry.delay_secs(attempt, None)
                    if hooks.on_retry is not None:
                        hooks.on_retry(ctx, worker, attempt, delay)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
                if retryable and attempts > 1 and hooks.on_exhausted is not None:
                    hooks.on_exhausted(ctx, worker)
                if hooks.on_outcome is not None:
                    hooks.on_outcome(ctx, worker, last.status, last.code)
                raise last from exc
            except BaseException:
                worker.load -= 1
                with contextlib.suppress(BaseException):
                    await events.aclose()  # type: ignore[attr-defined]
                raise
            return Stream(self, ctx, worker, events, first)
        raise last or self._no_workers(ctx)

    async def open_streams(
        self, ctx: RequestContext, params: list[GenerateParams], reply: Reply
    ) -> list[Stream]:
        """One stream per backend request (batched prompts); all opened before any byte is sent."""
        if len(params) == 1:
            return [await self.open_stream(ctx, params[0], reply)]
        results = await asyncio.gather(
            *(self.open_stream(ctx, p, reply) for p in params), return_exceptions=True
        )
        streams = [r for r in results if isinstance(r, Stream)]
        for r in results:
            if isinstance(r, BaseException):
                for s in streams:
                    await s.close(499, "cancelled")
                raise r
        return streams


async def merge(streams: list[Stream]) -> AsyncIterator[tuple[int, GenerateEvent]]:
    """Events of several streams as (stream number, event), in arrival order. One stream: no tasks."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    done = object()

    async def pump(i: int, stream: Stream) -> None:
        try:
            async for event in stream:
                queue.put_nowait((i, event))
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put_nowait((i, exc))
            return
        queue.put_nowait((i, done))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def close_all(streams: list[Stream], status: int, error_code: str | None = None) -> None:
    for s in streams:
        await s.close(status, error_code)


def mark_first_token(ctx: RequestContext, hooks: RelayHooks) -> None:
    """TTFT bookkeeping for the gateway's metrics (the HTTP path does this in `ctx.meter`)."""
    meter = ctx.meter_state
    if meter is not None and not meter.first_token_at:
        meter.first_token_at = time.monotonic()
        if hooks.on_first_chunk is not None:
            hooks.on_first_chunk(ctx)


def stream_error(exc: BaseException, ctx: RequestContext) -> tuple[bytes, int, str]:
    """(SSE error event, status, code) for a failure after the stream started."""
    if isinstance(exc, GrpcCallError):
        err = http_error(exc)
        status, code, message = err.status, errors.UPSTREAM_STREAM_ERROR, err.message
    elif isinstance(exc, HttpError):
        status, code, message = exc.status, exc.code, exc.message
    else:
        status, code, message = 500, errors.INTERNAL_ERROR, f"Stream failed: {type(exc).__name__}: {exc}"
    ctx.error_code = code
    return errors.sse_error_event(message, code, status) + SSE_DONE, status, code
