"""`Exchange.hand_over`: a listener that takes over an awaited exchange gets what came before, in order, then the
rest; an end or a failure that already happened is replayed once."""

from __future__ import annotations

import asyncio

from herder.workers.pool import BaseExchange, Exchange, UpstreamError


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_head(self, ex: BaseExchange) -> None:
        self.events.append(("head", None))

    def on_data(self, ex: BaseExchange, data: bytes) -> None:
        self.events.append(("data", data))

    def on_end(self, ex: BaseExchange) -> None:
        self.events.append(("end", None))

    def on_error(self, ex: BaseExchange, err: UpstreamError) -> None:
        self.events.append(("error", err))


def _streaming_exchange() -> Exchange:
    ex = Exchange(asyncio.get_running_loop())
    ex.streaming = True
    assert ex.listener is not None
    ex.listener.on_head(ex)  # what the connection does when the head arrives
    return ex


async def test_buffered_bytes_first_then_live_events() -> None:
    ex = _streaming_exchange()
    futures = ex.listener
    assert futures is not None
    futures.on_data(ex, b"a")
    futures.on_data(ex, b"b")
    rec = Recorder()
    ex.hand_over(rec)
    assert ex.listener is rec
    assert rec.events == [("data", b"ab")]
    rec.on_data(ex, b"c")  # later reads go straight to the new listener (the connection calls ex.listener)
    rec.on_end(ex)
    assert rec.events == [("data", b"ab"), ("data", b"c"), ("end", None)]
    assert not ex.done.done()  # the futures are no longer told anything


async def test_an_end_that_already_happened_is_replayed() -> None:
    ex = _streaming_exchange()
    futures = ex.listener
    assert futures is not None
    futures.on_data(ex, b"whole stream")
    futures.on_end(ex)
    rec = Recorder()
    ex.hand_over(rec)
    assert rec.events == [("data", b"whole stream"), ("end", None)]


async def test_a_failure_that_already_happened_is_replayed() -> None:
    ex = _streaming_exchange()
    err = UpstreamError("worker closed the connection", before_response=False)
    ex.fail(err)
    rec = Recorder()
    ex.hand_over(rec)
    assert rec.events == [("error", err)]
