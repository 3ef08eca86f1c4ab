"""BusyPoller: the loop keeps polling (never blocks) for the window after arm(), then stops."""

from __future__ import annotations

import asyncio

from herder.server.busy_poll import BusyPoller


class _Counting(BusyPoller):
    __slots__ = ("ticks",)

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        super().__init__(loop, window)
        self.ticks = 0

    def _tick(self) -> None:
        self.ticks += 1
        super()._tick()


def test_polls_through_the_window_then_stops() -> None:
    async def run() -> tuple[int, int, bool, bool]:
        poller = _Counting(asyncio.get_running_loop(), 0.02)
        poller.arm()
        polling_early = poller.polling
        await asyncio.sleep(0.01)  # would block in epoll; the queued tick keeps the loop iterating instead
        during = poller.ticks
        await asyncio.sleep(0.05)  # past the window: the last tick disarmed, the loop blocks again
        after = poller.ticks
        await asyncio.sleep(0.02)
        return during, after - poller.ticks, polling_early, poller.polling

    during, late_ticks, polling_early, polling_late = asyncio.run(run())
    assert polling_early
    assert during > 10  # re-queued on every loop iteration while the window was open
    assert late_ticks == 0
    assert not polling_late


def test_arming_again_extends_the_window_without_a_second_chain() -> None:
    async def run() -> tuple[float, float, int]:
        poller = _Counting(asyncio.get_running_loop(), 0.05)
        poller.arm()
        first = poller.until
        await asyncio.sleep(0.001)
        poller.arm()
        poller.arm()
        before = poller.ticks
        for _ in range(20):
            await asyncio.sleep(0)  # one loop iteration each: one tick each, if only one chain is queued
        return first, poller.until, poller.ticks - before

    first, second, ticks = asyncio.run(run())
    assert second > first
    assert 15 <= ticks <= 21
