"""TokenBucketAdmission: capacity, queue bound, FIFO hand-over, timeouts, cancellation, refill, metrics."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herder.observability.metrics import Metrics
from herder.server.admission import TokenBucketAdmission
from herder.server.errors import HttpError


def bucket(
    capacity: int = 2,
    refill: float | None = 0.0,
    queue: int = 2,
    timeout: float = 30.0,
    metrics: Metrics | None = None,
) -> TokenBucketAdmission:
    return TokenBucketAdmission(
        capacity=capacity, refill_per_second=refill, queue_size=queue, queue_timeout=timeout, metrics=metrics
    )


def counts(metrics: Metrics) -> dict[str, float]:
    return {
        labels[0]: child.value for labels, child in metrics.http_rate_limit.series().items() if child.value
    }


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_capacity_then_queue_then_reject() -> None:
    m = Metrics()
    adm = bucket(capacity=2, queue=2, metrics=m)
    await adm.acquire()
    await adm.acquire()
    waiters = [asyncio.create_task(adm.acquire()) for _ in range(2)]
    await settle()
    assert adm.waiting == 2
    with pytest.raises(HttpError) as exc:
        await adm.acquire()
    assert exc.value.status == 429 and exc.value.code == "rate_limit_exceeded"
    adm.release()
    adm.release()
    await asyncio.gather(*waiters)
    assert adm.waiting == 0 and adm.available() == 0
    assert counts(m) == {"allowed": 2, "queued": 2, "dequeued": 2, "rejected": 1}


async def test_no_queue_rejects_at_once() -> None:
    adm = bucket(capacity=1, queue=0)
    await adm.acquire()
    with pytest.raises(HttpError) as exc:
        await adm.acquire()
    assert exc.value.status == 429


async def test_fifo_handover_and_no_queue_jumping() -> None:
    adm = bucket(capacity=1, queue=10)
    await adm.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        await adm.acquire()
        order.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(wait(i)))
        await settle()  # arrival order is creation order
    for _ in range(5):
        adm.release()
        # a newcomer arriving right after a release must queue behind the waiters
        late = asyncio.create_task(adm.acquire())
        await settle()
        assert not late.done()
        late.cancel()
        await asyncio.gather(late, return_exceptions=True)
        await settle()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_queue_timeout_gives_408_and_frees_the_slot() -> None:
    m = Metrics()
    adm = bucket(capacity=1, queue=1, timeout=0.05, metrics=m)
    await adm.acquire()
    with pytest.raises(HttpError) as exc:
        await adm.acquire()
    assert exc.value.status == 408 and exc.value.code == "queue_timeout"
    assert adm.waiting == 0
    adm.release()
    await adm.acquire()  # the token was not lost to the timed-out waiter
    assert counts(m) == {"allowed": 2, "queued": 1, "timeout": 1}


async def test_zero_timeout_means_no_wait() -> None:
    adm = bucket(capacity=1, queue=5, timeout=0)
    await adm.acquire()
    with pytest.raises(HttpError) as exc:
        await adm.acquire()
    assert exc.value.status == 408 and adm.waiting == 0


async def test_cancelled_waiter_leaves_queue_without_a_token() -> None:
    m = Metrics()
    adm = bucket(capacity=1, queue=2, metrics=m)
    await adm.acquire()
    first = asyncio.create_task(adm.acquire())
    second = asyncio.create_task(adm.acquire())
    await settle()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert adm.waiting == 1
    adm.release()
    await asyncio.wait_for(second, 5)  # the released token went to the remaining waiter
    assert adm.available() == 0
    assert counts(m)["cancelled"] == 1


async def test_token_granted_during_cancellation_is_handed_on() -> None:
    adm = bucket(capacity=1, queue=2)
    await adm.acquire()
    first = asyncio.create_task(adm.acquire())
    second = asyncio.create_task(adm.acquire())
    await settle()
    adm.release()  # grants `first` ...
    first.cancel()  # ... which is cancelled before it could resume
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    await asyncio.wait_for(second, 5)  # the token moved on instead of leaking
    assert adm.available() == 0 and adm.waiting == 0


class FakeReply:
    """The two Reply attributes admission uses."""

    def __init__(self) -> None:
        self.closed = False
        self.on_close: object = None

    def leave(self) -> None:
        self.closed = True
        if callable(self.on_close):
            self.on_close()


async def test_client_gone_while_queued_gives_499_and_restores_hook() -> None:
    adm = bucket(capacity=1, queue=2)
    await adm.acquire()
    reply = FakeReply()
    sentinel = object()
    reply.on_close = sentinel
    task = asyncio.create_task(adm.acquire(reply))  # type: ignore[arg-type]
    await settle()
    assert adm.waiting == 1 and reply.on_close is not sentinel
    reply.leave()  # what HttpProtocol.connection_lost does
    with pytest.raises(HttpError) as exc:
        await task
    assert exc.value.status == 499 and adm.waiting == 0 and reply.on_close is sentinel
    adm.release()
    assert adm.available() == 1
    gone = FakeReply()
    gone.closed = True
    await adm.acquire(gone)  # type: ignore[arg-type]  # a token is free: admitted even if gone (the router notices the closed reply)
    with pytest.raises(HttpError) as exc:
        await adm.acquire(gone)  # type: ignore[arg-type]
    assert exc.value.status == 499


async def test_refill_grants_waiters_without_release() -> None:
    adm = bucket(capacity=2, refill=50.0, queue=4)
    await adm.acquire()
    await adm.acquire()
    waiters = [asyncio.create_task(adm.acquire()) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*waiters), 5)  # the refill timer hands out tokens over time
    assert adm.waiting == 0


async def test_default_refill_is_capacity_per_second() -> None:
    adm = bucket(capacity=3, refill=None)
    assert adm.refill_per_second == 3.0


async def test_release_is_capped_at_capacity() -> None:
    now = [0.0]
    adm = TokenBucketAdmission(
        capacity=2, refill_per_second=1000.0, queue_size=2, queue_timeout=30.0, clock=lambda: now[0]
    )
    await adm.acquire()
    now[0] += 0.01  # refill tops the bucket up
    adm.release()  # a late release cannot push it beyond capacity
    assert adm.available() == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        bucket(capacity=0)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["acquire", "release", "cancel", "cancel_newest"]), max_size=60),
    capacity=st.integers(1, 4),
    queue=st.integers(0, 4),
)
def test_tokens_are_conserved(ops: list[str], capacity: int, queue: int) -> None:
    """Pure concurrency limit: held + free tokens == capacity after any sequence; FIFO among the admitted."""

    async def run() -> None:
        adm = bucket(capacity=capacity, queue=queue, timeout=3600)
        held = 0
        pending: list[tuple[int, asyncio.Task[None]]] = []
        admitted_order: list[int] = []
        n = 0
        for op in ops:
            if op == "acquire":
                n += 1
                task = asyncio.create_task(adm.acquire())
                await settle()
                if task.done() and task.exception() is None:
                    held += 1
                elif not task.done():
                    pending.append((n, task))
                else:
                    assert isinstance(task.exception(), HttpError)
                    assert adm.waiting == queue  # only a full queue rejects
            elif op == "release" and held:
                held -= 1
                adm.release()
                await settle()
            elif op in ("cancel", "cancel_newest") and pending:
                i = 0 if op == "cancel" else len(pending) - 1
                _, task = pending.pop(i)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            still: list[tuple[int, asyncio.Task[None]]] = []
            for k, task in pending:
                if task.done():
                    assert task.exception() is None
                    held += 1
                    admitted_order.append(k)
                else:
                    still.append((k, task))
            pending = still
            assert held + adm.available() == capacity
            assert adm.waiting == len(pending)
            assert held <= capacity
        assert admitted_order == sorted(admitted_order)
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(t for _, t in pending), return_exceptions=True)

    asyncio.run(run())
