"""Admission control (token bucket + bounded FIFO queue). Placeholder until the implementation lands."""

from __future__ import annotations

from typing import Any

from herder.server import errors
from herder.server.errors import HttpError


class TokenBucketAdmission:
    def __init__(self, *, capacity: int, refill_per_second: float | None, queue_size: int, queue_timeout: float,
                 metrics: Any = None) -> None:
        self.capacity = capacity

    async def acquire(self) -> None:
        raise HttpError(503, errors.INTERNAL_ERROR, "admission control is not implemented yet")

    def release(self) -> None:
        pass
