"""One periodic sweep instead of a timer per request.

Arming and cancelling an event-loop timer per request (call_later + cancel) costs more than the rest of a timeout's
bookkeeping; request timeouts are long (seconds to minutes) and need no sub-tick precision. Items register with a
`DeadlineSweeper` and expose `deadline` (monotonic seconds, 0 = none) and `expire()`; the sweeper wakes every
`tick` seconds while it has items and expires the overdue ones. Cost per request: a set add and a set discard.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Protocol


class Expirable(Protocol):
    @property
    def deadline(self) -> float: ...

    def expire(self) -> None: ...


class DeadlineSweeper:
    def __init__(self, tick: float = 1.0) -> None:
        self.tick = tick
        self.items: set[Expirable] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, item: Expirable) -> None:
        self.items.add(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, item: Expirable) -> None:
        self.items.discard(item)

    def close(self) -> None:
        """Stop sweeping (at shutdown)."""
        self.items.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        try:
            while self.items:
                await asyncio.sleep(self.tick)
                now = monotonic()
                for item in [i for i in self.items if i.deadline and i.deadline <= now]:
                    self.items.discard(item)
                    item.expire()
        finally:
            if self._task is asyncio.current_task():
                self._task = None


def tick_for(*timeouts: float) -> float:
    """A sweep interval fine enough for the shortest configured timeout (an eighth of it, 10 ms to 1 s)."""
    positive = [t for t in timeouts if t and t > 0]
    return max(0.01, min(1.0, *(t / 8 for t in positive))) if positive else 1.0
