"""Busy polling while a worker answers: for a short window after a request went upstream, the event loop polls
(epoll with a zero timeout) instead of blocking.

A process that blocks in `epoll_wait` is descheduled, and when the worker's answer lands the kernel has to wake it
again. On virtual machines waking an idle vCPU is slow (a halt exit, then an inter-processor interrupt), and the
process resumes with cold caches. For `window` seconds after each upstream send the loop keeps one ready
callback queued, so it polls rather than sleeps, and reads the answer as soon as it arrives. HAProxy's
`busy-polling` option is the same idea for a whole process.

Measured (bench/README.md): with a worker that answers in ~40 µs, `--busy-poll-us 100` took ~20 µs off the
gateway's added latency at concurrency 1 and cost ~30 µs more CPU per request (the gateway spins instead of
sleeping). In front of LLM engines, whose answers take milliseconds, the gain is negligible and the spin is pure
cost, so it is off by default (`--busy-poll-us 0`); it suits fast endpoints (embeddings, classification, small
models) where tens of microseconds matter. Cost: at most `window` of CPU per upstream request (the windows of
concurrent requests overlap), none while idle; under load the loop never blocks anyway.
"""

from __future__ import annotations

import asyncio
from time import monotonic


class BusyPoller:
    """Keeps `loop` polling until `window` seconds after the last `arm()`."""

    __slots__ = ("_armed", "_call_soon", "until", "window")

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        self.window = window
        self.until = 0.0
        self._armed = False
        self._call_soon = loop.call_soon

    def arm(self) -> None:
        """A request just went to a worker: poll for the next `window` seconds."""
        self.until = monotonic() + self.window
        if not self._armed:
            self._armed = True
            self._call_soon(self._tick)

    def _tick(self) -> None:
        # A queued callback makes the loop's next poll non-blocking; re-queue until the window closes.
        if monotonic() < self.until:
            self._call_soon(self._tick)
        else:
            self._armed = False

    @property
    def polling(self) -> bool:
        """Whether the loop is being kept from blocking now."""
        return self._armed
