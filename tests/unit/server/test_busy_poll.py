"""BusyPoller: the loop keeps polling (never blocks) for the window after arm(), then stops. A fake clock drives
the window; each `await asyncio.sleep(0)` is one loop iteration."""

from __future__ import annotations

import asyncio

import pytest

from herder.server import busy_poll
from herder.server.busy_poll import BusyPoller


class _Counting(BusyPoller):
    __slots__ = ("ticks",)

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        super().__init__(loop, window)
        self.ticks = 0

    def _tick(self) -> None:
        self.ticks += 1
        super()._tick()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The poller's clock, moved by hand."""
    fake = _Clock()
    monkeypatch.setattr(busy_poll, "monotonic", fake)
    return fake


async def _iterate(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_polls_through_the_window_then_stops(clock: _Clock) -> None:
    async def run() -> tuple[bool, int, bool, int]:
        poller = _Counting(asyncio.get_running_loop(), 0.02)
        poller.arm()
        await _iterate(20)
        during, polling_during = poller.ticks, poller.polling
        clock.now += 0.03  # past the window: the next tick disarms
        await _iterate(20)
        return polling_during, during, poller.polling, poller.ticks - during

    polling_during, during, polling_after, ticks_after = asyncio.run(run())
    assert polling_during
    assert 19 <= during <= 21  # re-queued on every loop iteration while the window is open
    assert not polling_after
    assert ticks_after == 1  # the one tick that found the window closed, then none


def test_arming_again_extends_the_window_without_a_second_chain(clock: _Clock) -> None:
    async def run() -> tuple[float, float, int, bool]:
        poller = _Counting(asyncio.get_running_loop(), 0.05)
        poller.arm()
        first = poller.until
        clock.now += 0.04
        poller.arm()
        poller.arm()
        before = poller.ticks
        await _iterate(20)
        clock.now += 0.02  # past the first window, inside the extended one
        await _iterate(5)
        return first, poller.until, poller.ticks - before, poller.polling

    first, extended, ticks, polling = asyncio.run(run())
    assert extended == pytest.approx(first + 0.04)
    assert 24 <= ticks <= 26  # one tick per iteration: one chain, not three
    assert polling
