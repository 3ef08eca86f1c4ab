"""Admission control: SMG's token bucket with a bounded FIFO queue (spec 2.5, 4.5).

The bucket holds `capacity` tokens (= --max-concurrent-requests) and starts full. Each admitted request takes one
token and gives it back with `release()` once its response body is complete or its client left; returned tokens
are capped at `capacity`, as SMG's `return_tokens`. Tokens also refill continuously at `refill_per_second`
(--rate-limit-tokens-per-second; None = `capacity` per second, as SMG HEAD; 0 = a pure concurrency limit where
only released tokens come back).

No token: the request waits in a FIFO queue of at most `queue_size` waiters (0 = no queue). A full queue answers
429 `rate_limit_exceeded`; a wait longer than `queue_timeout` answers 408 `queue_timeout` (0 = no waiting: 408
at once, as a zero tokio timeout). A token that comes back always goes to the oldest waiter; a newcomer never
takes a token while anyone is queued. A waiter whose task is cancelled, or whose client left (when `acquire` is
given the `Reply`), leaves the queue without consuming a token; a token granted in the instant before a
cancellation is handed on, never lost.

Cost: O(1) per acquire and release (an `OrderedDict` of waiting futures, one timer per waiter for its timeout,
and a single refill timer armed only while someone waits and the refill rate is positive). No polling.
Outcomes are counted in `smg_http_rate_limit_total{result}`: allowed (token at once), queued (entered the queue),
dequeued (got a token after waiting), rejected (429), timeout (408), cancelled (client left or task cancelled).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Reply

# How a queued waiter's future resolves.
_GRANTED = 1
_TIMED_OUT = 2
_GONE = 3

# The code SMG-style routers use for a client that disconnected (routing/http.py sets the same string).

RESULTS = ("allowed", "queued", "dequeued", "rejected", "timeout", "cancelled")


class _NullCounter:
    """Stands in for a counter child when no metrics registry was given."""

    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        pass


class TokenBucketAdmission:
    """Token bucket + bounded FIFO queue. `await acquire()` before routing; `release()` exactly once after."""

    __slots__ = (
        "_allowed",
        "_cancelled",
        "_clock",
        "_dequeued",
        "_queued",
        "_refill_timer",
        "_rejected",
        "_stamp",
        "_timeout",
        "_waiters",
        "capacity",
        "queue_size",
        "queue_timeout",
        "refill_per_second",
        "tokens",
    )

    def __init__(
        self,
        *,
        capacity: int,
        refill_per_second: float | None,
        queue_size: int,
        queue_timeout: float,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.refill_per_second = float(capacity) if refill_per_second is None else max(0.0, refill_per_second)
        self.queue_size = max(0, queue_size)
        self.queue_timeout = queue_timeout
        self.tokens = float(capacity)
        self._clock = clock
        self._stamp = clock()
        # Waiting futures in arrival order -> their timeout timer (O(1) removal from anywhere).
        self._waiters: OrderedDict[asyncio.Future[int], asyncio.TimerHandle | None] = OrderedDict()
        self._refill_timer: asyncio.TimerHandle | None = None
        family = getattr(metrics, "http_rate_limit", None)
        counters = [family.labels(r) if family is not None else _NullCounter() for r in RESULTS]
        (self._allowed, self._queued, self._dequeued, self._rejected, self._timeout, self._cancelled) = (
            counters
        )

    # -- public -------------------------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Requests in the queue right now."""
        return len(self._waiters)

    def available(self) -> float:
        """Tokens in the bucket now (refilled up to this instant)."""
        self._refill()
        return self.tokens

    def try_acquire(self) -> bool:
        """Take a token if one is free and nobody queues ahead (no waiting); False means call `acquire`."""
        self._refill()
        if self._waiters:
            self._dispatch()
        if not self._waiters and self.tokens >= 1.0:
            self.tokens -= 1.0
            self._allowed.inc()
            return True
        return False

    async def acquire(self, reply: Reply | None = None) -> None:
        """Take a token, waiting in the queue if needed. Raises HttpError 429 (queue full), 408 (waited longer
        than `queue_timeout`) or 499 (the client of `reply` left while queued)."""
        self._refill()
        if self._waiters:
            self._dispatch()  # tokens that accrued since the refill timer last fired go to waiters first
        if not self._waiters and self.tokens >= 1.0:
            self.tokens -= 1.0
            self._allowed.inc()
            return
        if len(self._waiters) >= self.queue_size:
            self._rejected.inc()
            raise HttpError(
                429,
                errors.RATE_LIMITED,
                "Too many requests: the admission queue is full"
                if self.queue_size
                else "Too many requests: no capacity available",
            )
        if self.queue_timeout <= 0:
            self._timeout.inc()
            raise HttpError(408, errors.QUEUE_TIMEOUT, "Request timed out waiting for capacity")
        if reply is not None and reply.closed:
            self._cancelled.inc()
            raise HttpError(499, errors.CLIENT_DISCONNECTED, "Client disconnected while waiting for capacity")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._waiters[fut] = loop.call_later(self.queue_timeout, self._resolve, fut, _TIMED_OUT)
        self._queued.inc()
        self._arm_refill(loop)
        previous_on_close = None
        if reply is not None:
            previous_on_close = reply.on_close
            reply.on_close = lambda: self._resolve(fut, _GONE)
        try:
            outcome = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result() == _GRANTED:
                self.release()  # granted just before the cancellation landed: hand the token on
            else:
                self._forget(fut)
            self._cancelled.inc()
            raise
        finally:
            if reply is not None:
                reply.on_close = previous_on_close
        if outcome == _GRANTED:
            self._dequeued.inc()
            return
        if outcome == _TIMED_OUT:
            self._timeout.inc()
            raise HttpError(
                408,
                errors.QUEUE_TIMEOUT,
                f"Request timed out after waiting {self.queue_timeout:g} s for capacity",
            )
        self._cancelled.inc()
        raise HttpError(499, errors.CLIENT_DISCONNECTED, "Client disconnected while waiting for capacity")

    def release(self) -> None:
        """Give one token back (capped at capacity) and hand it to the oldest waiter, if any."""
        self._refill()
        self.tokens = min(float(self.capacity), self.tokens + 1.0)
        if self._waiters:
            self._dispatch()

    def close(self) -> None:
        """Stop the refill timer (shutdown); waiters are left to their own timeouts."""
        if self._refill_timer is not None:
            self._refill_timer.cancel()
            self._refill_timer = None

    # -- internals ----------------------------------------------------------------------------------------------
    def _refill(self) -> None:
        now = self._clock()
        rate = self.refill_per_second
        if rate > 0.0 and self.tokens < self.capacity:
            self.tokens = min(float(self.capacity), self.tokens + (now - self._stamp) * rate)
        self._stamp = now

    def _dispatch(self) -> None:
        """Grant whole tokens to waiters, oldest first; re-arm the refill timer if some still wait."""
        waiters = self._waiters
        while waiters and self.tokens >= 1.0:
            fut, timer = waiters.popitem(last=False)
            if timer is not None:
                timer.cancel()
            if fut.done():
                continue  # defensive: resolved futures are removed when they resolve
            self.tokens -= 1.0
            fut.set_result(_GRANTED)
        if waiters:
            self._arm_refill(asyncio.get_running_loop())

    def _arm_refill(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer for the moment the next whole token accrues (only while someone waits)."""
        rate = self.refill_per_second
        if rate <= 0.0 or self._refill_timer is not None:
            return
        delay = max(0.001, (1.0 - self.tokens) / rate)
        self._refill_timer = loop.call_later(delay, self._on_refill)

    def _on_refill(self) -> None:
        self._refill_timer = None
        self._refill()
        if self._waiters:
            self._dispatch()

    def _resolve(self, fut: asyncio.Future[int], outcome: int) -> None:
        """Timeout or client gone: leave the queue without a token."""
        if fut.done():
            return
        self._forget(fut)
        fut.set_result(outcome)

    def _forget(self, fut: asyncio.Future[int]) -> None:
        timer = self._waiters.pop(fut, None)
        if timer is not None:
            timer.cancel()
        if not self._waiters and self._refill_timer is not None:
            self._refill_timer.cancel()
            self._refill_timer = None
