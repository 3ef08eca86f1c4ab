"""One client request proxied to HTTP workers, as a callback-driven state machine (no task, no future).

`ProxyCall` selects a worker, sends the client's original bytes on a pooled connection and listens to the
exchange (`herder.workers.pool.ExchangeListener`): the response head decides between relaying and retrying (a
retryable status before any byte went to the client: backoff+jitter or Retry-After on a loop timer, then select
again, avoiding the worker that just failed); a non-streamed body goes out as one response, a stream chunk by
chunk as the worker's reads arrive. The client leaving closes the upstream connection at once. Timeouts (time to
the response head, silence between chunks, total time) are one `DeadlineSweeper` entry per call, not a timer.

Phases: SELECT -> HEAD (request sent, waiting for the head) -> BODY (relaying) -> DONE; BACKOFF between attempts.
The worker's in-flight load is taken at selection and released exactly once per attempt. A call can also `adopt`
an exchange someone else sent (the PD router's legs) and relay it from BODY on: one relay for both paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from herder.routing.context import RequestContext
from herder.routing.retry import RETRYABLE_STATUSES
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.messages import Reply
from herder.workers.pool import BaseExchange, Exchange, ExchangeListener, UpstreamError
from herder.workers.worker import Worker

if TYPE_CHECKING:
    from herder.routing.http import HttpRouter

log = logging.getLogger("herder.router")

# Response headers not relayed: hop-by-hop, framing (we re-frame), and ones the gateway sets itself.
DROPPED_RESPONSE_HEADERS = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"content-length", b"te", b"trailer",
    b"upgrade", b"content-type", b"x-request-id", b"date", b"server",
})

_SELECT, _HEAD, _BODY, _BACKOFF, _DONE = range(5)


def relayed_head(raw_head: bytes, lower_head: bytes) -> tuple[bytes, bytes]:
    """From a worker's raw response head: its content type (application/json when it sends none) and the header
    lines that go to the client, CRLF-terminated (usually none: workers send framing, content type, date and
    server). One split and one partition per line: C calls, few of them. (Measured: a regex findall over the
    head, or header names collected by the parser's on_header callback, cost as much as this loop saves.)"""
    content_type = b"application/json"
    kept = b""
    dropped = DROPPED_RESPONSE_HEADERS
    lines = lower_head.split(b"\r\n")
    raw_lines = raw_head.split(b"\r\n")
    for i in range(1, len(lines)):
        name = lines[i].partition(b":")[0]
        if name not in dropped:
            kept += raw_lines[i] + b"\r\n"
        elif name == b"content-type":
            content_type = raw_lines[i].partition(b":")[2].strip(b" \t")
    return content_type, kept


class ProxyCall:
    """One request through `HttpRouter`: started with `start()`, reports through `on_done(call)` exactly once
    (`call.error` is the HttpError to answer with when no response was relayed)."""

    __slots__ = ("_first_chunk", "_tail", "_timer", "attempt", "body_deadline", "client_left", "ctx", "error", "ex",
                 "failed", "head_deadline", "last_activity", "last_error", "on_done", "phase", "reason", "reply",
                 "router", "streaming", "worker")

    def __init__(self, router: HttpRouter, ctx: RequestContext, reply: Reply,
                 on_done: Callable[[ProxyCall], None]) -> None:
        self.router = router
        self.ctx = ctx
        self.reply = reply
        self.on_done = on_done
        self.phase = _SELECT
        self.attempt = 0
        self.worker: Worker | None = None  # the attempt's worker while its load is held
        self.failed: Worker | None = None
        self.ex: BaseExchange | None = None
        self.error: HttpError | None = None
        self.last_error: HttpError | None = None
        self.client_left = False
        self.streaming = False  # the response is relayed as a stream (no Content-Length)
        self.reason: str | None = None  # why a timeout fired
        self.head_deadline = 0.0
        self.body_deadline = 0.0
        self.last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._first_chunk = router.hooks.on_first_chunk
        self._tail = b""  # a whole stream that arrived in one read, written with its head and end at once

    # -- driving ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.reply.on_close = self._client_gone
        self._attempt()
        self._watch()  # from after the first send (nothing can time out before it; the send leaves first)

    def adopt(self, worker: Worker, ex: Exchange, listener: ExchangeListener | None = None) -> None:
        """Relay `ex`, a response whose head arrived (a PD leg), as this call's answer, without retries. The call
        holds one unit of `worker`'s load from here on (released when it finishes). `listener`, when given, sits
        between the exchange and the call (a body transform) and passes each event on to the call."""
        self.worker = worker
        self.ex = ex
        reply = self.reply
        if reply.closed:
            self.client_left = True
            self._abandon()
            self._finish()
            return
        reply.on_close = self._client_gone
        self._begin_body(ex)
        ex.hand_over(listener or self)
        self._watch()

    def _watch(self) -> None:
        """Put the running call under the router's deadline sweeper (when any timeout is configured)."""
        router = self.router
        if self.phase != _DONE and (router.request_timeout or router.stall_timeout):
            router.sweeper.add(self)

    def cancel(self) -> None:
        """The caller gives up (its task was cancelled): close the upstream exchange and finish."""
        if self.phase != _DONE:
            self._abandon()
            self._finish()

    def _attempt(self) -> None:
        self._timer = None
        try:
            self._try_attempt()
        except Exception as exc:
            self._crash(exc)

    def _try_attempt(self) -> None:
        router, ctx, reply = self.router, self.ctx, self.reply
        if reply.closed:
            self._finish()
            return
        worker = router.select(ctx, self.failed)
        if worker is None:
            self.error = self.last_error or HttpError(
                503, errors.NO_AVAILABLE_WORKERS,
                f"No available workers for model '{ctx.model}'" if ctx.model else "No available workers")
            self._finish()
            return
        worker.load += 1
        self.worker = worker
        self.phase = _HEAD
        ex = self.ex = BaseExchange(ctx.upstream_request(worker), self)
        worker.pool.send(ex)
        # Bookkeeping after the send: it overlaps the worker's work instead of delaying the request.
        if router.request_timeout:
            self.head_deadline = time.monotonic() + router.request_timeout
        hooks = router.hooks
        if hooks.on_selected is not None:
            hooks.on_selected(ctx, worker)
        if hooks.on_sent is not None:
            hooks.on_sent()

    def _release(self) -> None:
        worker = self.worker
        if worker is not None:
            self.worker = None
            worker.load -= 1

    def _finish(self) -> None:
        if self.phase == _DONE:
            return
        self.phase = _DONE
        self._release()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.router.sweeper.discard(self)
        reply = self.reply
        reply.on_close = reply.on_pause = reply.on_resume = None
        self.ex = None
        self.on_done(self)

    def _abandon(self) -> None:
        """Drop the current exchange (its later events are ignored) and close its connection."""
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.listener = None
            ex.abort()

    def _retry_or_fail(self, worker: Worker, retry_after: bytes | None) -> None:
        """After a failed attempt on `worker` (already recorded): back off and try again, or give up."""
        router = self.router
        if self.attempt + 1 < router.retry.attempts and not self.reply.closed:
            self.failed = worker
            self._release()
            delay = router.retry.delay_secs(self.attempt, retry_after)
            if router.hooks.on_retry is not None:
                router.hooks.on_retry(self.ctx, worker, self.attempt, delay)
            self.attempt += 1
            self.phase = _BACKOFF
            self.head_deadline = 0.0
            if delay > 0:
                self._timer = asyncio.get_running_loop().call_later(delay, self._attempt)
            else:
                self._attempt()
            return
        if router.retry.attempts > 1 and router.hooks.on_exhausted is not None:
            router.hooks.on_exhausted(self.ctx, worker)
        self.error = self.last_error
        self._finish()

    def _crash(self, exc: Exception) -> None:
        """A bug, not an upstream failure: log it, answer 500 (or cut the stream) and finish."""
        log.error("unhandled error proxying %s", self.ctx.path, exc_info=exc,
                  extra={"request_id": self.ctx.request_id.decode("latin-1")})
        self._abandon()
        if not self.reply.started:
            self.error = HttpError(500, errors.INTERNAL_ERROR, "Internal server error")
        elif not self.reply.done:
            self.reply.abort()
        self._finish()

    # -- deadlines (DeadlineSweeper) ------------------------------------------------------------------------------
    @property
    def deadline(self) -> float:
        phase = self.phase
        if phase == _HEAD:
            return self.head_deadline
        if phase == _BODY:
            stall = self.router.stall_timeout
            stall_at = self.last_activity + stall if stall else 0.0
            total = self.body_deadline
            if stall_at and total:
                return min(stall_at, total)
            return stall_at or total
        return 0.0

    def expire(self) -> None:
        ex = self.ex
        if ex is None:
            return
        router = self.router
        if self.phase == _HEAD:
            self._abandon()  # the worker sees the request go away
            try:
                self._on_error(UpstreamError("worker did not answer in time", before_response=True, timeout=True))
            except Exception as exc:
                self._crash(exc)
            if self.phase != _DONE:
                router.sweeper.add(self)  # retrying: keep watching the next attempt
            return
        now = time.monotonic()
        if self.body_deadline and now >= self.body_deadline:
            self.reason = "request timeout exceeded"
        else:
            self.reason = f"no data from the worker for {router.stall_timeout:g} s"
        ex.abort()  # on_error follows with the reason set

    def _client_gone(self) -> None:
        self.client_left = True
        ex = self.ex
        if self.phase == _BODY and self.streaming and ex is not None:
            ex.abort()  # on_error records the disconnect
            return
        self._abandon()
        self._finish()

    # -- ExchangeListener -----------------------------------------------------------------------------------------
    def on_head(self, ex: BaseExchange) -> None:
        if ex is not self.ex:
            return
        try:
            self._on_head(ex)
        except Exception as exc:
            self._crash(exc)

    def _on_head(self, ex: BaseExchange) -> None:
        router, worker = self.router, self.worker
        assert worker is not None
        status = ex.status
        retryable = status in RETRYABLE_STATUSES
        if retryable and self.attempt + 1 < router.retry.attempts and not self.reply.closed:
            router.record(worker, False)
            if router.hooks.on_outcome is not None:
                router.hooks.on_outcome(self.ctx, worker, status, None)
            retry_after = ex.header(b"retry-after") if status in (429, 503) else None
            self._abandon()  # drop the error body: cheaper than reading it, and the socket is not reused
            self._retry_or_fail(worker, retry_after)
            return
        if retryable and router.retry.attempts > 1 and router.hooks.on_exhausted is not None:
            router.hooks.on_exhausted(self.ctx, worker)
        self._begin_body(ex)

    def _begin_body(self, ex: BaseExchange) -> None:
        """The response is this call's answer: watch its body (stall and total time), relay its stream."""
        self.phase = _BODY
        if ex.complete:
            return  # the whole response is here: on_end follows at once
        now = self.last_activity = time.monotonic()
        if self.router.request_timeout:
            self.body_deadline = now + self.router.request_timeout
        if ex.streaming:
            # The head goes out with the first chunk (one write, one packet: time to first chunk), or at the end.
            self.streaming = True
            reply = self.reply
            reply.on_pause = ex.pause_reading
            reply.on_resume = ex.resume_reading

    def on_data(self, ex: BaseExchange, data: bytes) -> None:
        if ex is not self.ex:
            return
        self.last_activity = time.monotonic()
        try:
            reply = self.reply
            if reply.started:
                reply.write_nowait(data)
            elif ex.complete:
                self._tail += data  # the whole stream is here: on_end writes head, data and end, then meters it
                return
            else:
                self._start_stream(ex, data)
            self._relayed(data)
        except Exception as exc:
            self._crash(exc)

    def _relayed(self, data: bytes) -> None:
        """Bookkeeping for a stream read that went to the client (after the write: the client does not wait)."""
        first_chunk = self._first_chunk
        if first_chunk is not None:
            self._first_chunk = None
            first_chunk(self.ctx)
        self.ctx.meter(data)

    def _start_stream(self, ex: BaseExchange, first_chunk: bytes, end: bool = False) -> None:
        content_type, block = relayed_head(ex.raw_head, ex.lower_head)
        self.reply.start_stream(ex.status, None, content_type, block, first_chunk, end)

    def on_end(self, ex: BaseExchange) -> None:
        if ex is not self.ex:
            return
        try:
            router, worker, ctx = self.router, self.worker, self.ctx
            assert worker is not None
            status = ex.status
            if ex.streaming:
                if not self.reply.started:
                    self._start_stream(ex, self._tail, end=True)
                    if self._tail:
                        self._relayed(self._tail)
                else:
                    self.reply.end_stream()
            else:
                body = ctx.usage_tail = ex.body()
                content_type, block = relayed_head(ex.raw_head, ex.lower_head)
                self.reply.send(status, body, None, content_type, block)
            # Outcome bookkeeping after the client's write: it is not what the client waits for.
            router.record(worker, status not in RETRYABLE_STATUSES)
            if router.hooks.on_outcome is not None:
                router.hooks.on_outcome(ctx, worker, status, None)
        except Exception as exc:
            self._crash(exc)
            return
        self._finish()

    def on_error(self, ex: BaseExchange, err: UpstreamError) -> None:
        if ex is not self.ex:
            return
        self.ex = None
        try:
            self._on_error(err)
        except Exception as exc:
            self._crash(exc)

    def _on_error(self, err: UpstreamError) -> None:
        router, worker, ctx = self.router, self.worker, self.ctx
        assert worker is not None
        hooks = router.hooks
        if self.phase == _HEAD:
            router.record(worker, False)
            code = errors.UPSTREAM_TIMEOUT if err.timeout else errors.UPSTREAM_CONNECTION_FAILED
            self.last_error = HttpError(504 if err.timeout else 502, code,
                                        f"Upstream worker {worker.url} failed: {err}")
            if hooks.on_attempt_failed is not None:
                hooks.on_attempt_failed(ctx, worker, code)
            self._retry_or_fail(worker, None)
            return
        timed_out = self.reason is not None
        if not self.streaming:
            if self.client_left:
                self._finish()
                return
            router.record(worker, False)
            self.error = HttpError(504 if timed_out else 502,
                                   errors.UPSTREAM_TIMEOUT if timed_out else errors.UPSTREAM_CONNECTION_FAILED,
                                   f"Upstream worker {worker.url} failed mid-response: {self.reason or err}")
            self._finish()
            return
        if self.client_left:
            ctx.error_code = errors.CLIENT_DISCONNECTED
            router.record(worker, True)
            if hooks.on_outcome is not None:
                hooks.on_outcome(ctx, worker, 499, errors.CLIENT_DISCONNECTED)
            self._finish()
            return
        # The stream died mid-way: that is a failure, not a success, and the client is told in-band.
        router.record(worker, False)
        if not self.reply.started:
            self.reply.start_stream(200, None, b"text/event-stream")
        code = errors.UPSTREAM_TIMEOUT if timed_out else errors.UPSTREAM_STREAM_ERROR
        ctx.error_code = code
        if hooks.on_outcome is not None:
            hooks.on_outcome(ctx, worker, 504 if timed_out else 502, code)
        self.reply.end_stream(errors.sse_error_event(f"Upstream stream failed: {self.reason or err}", code,
                                                     504 if timed_out else 502))
        self._finish()
