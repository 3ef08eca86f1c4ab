"""Retry policy: which outcomes retry and how long to wait (SMG's rules, spec 4.2)."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(slots=True)
class RetryConfig:
    max_retries: int = 5  # total attempts, including the first
    initial_backoff_ms: int = 50
    max_backoff_ms: int = 30000
    backoff_multiplier: float = 1.5
    jitter_factor: float = 0.2
    enabled: bool = True

    @property
    def attempts(self) -> int:
        return max(1, self.max_retries) if self.enabled else 1

    def backoff_secs(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before attempt `attempt + 1` (0-based): min(initial * mult^k, max), +/- jitter."""
        base = min(self.initial_backoff_ms * self.backoff_multiplier**attempt, self.max_backoff_ms)
        jitter = (rng or random).uniform(-self.jitter_factor, self.jitter_factor) if self.jitter_factor else 0.0
        return max(0.0, round(base * (1 + jitter))) / 1000.0

    def delay_secs(self, attempt: int, retry_after: bytes | None) -> float:
        """Backoff for this attempt, or the worker's Retry-After (seconds) when larger, capped at the max."""
        delay = self.backoff_secs(attempt)
        if retry_after:
            try:
                seconds = float(retry_after.decode().strip())
            except (UnicodeDecodeError, ValueError):
                seconds = -1.0  # HTTP-date form: ignore, use backoff
            if seconds > delay:
                delay = seconds
        return min(delay, self.max_backoff_ms / 1000.0)
