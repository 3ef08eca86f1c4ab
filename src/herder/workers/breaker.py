"""Per-worker circuit breaker, SMG's consecutive-outcome state machine (spec 4.1).

Closed -> Open after `failure_threshold` consecutive failures; Open -> HalfOpen lazily once `timeout` passed
since the transition; HalfOpen -> Closed after `success_threshold` consecutive successes; any failure in
HalfOpen reopens it. Only retryable statuses and transport errors are failures; other 4xx are successes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return ("closed", "open", "half_open")[self.value]


@dataclass(slots=True)
class BreakerConfig:
    failure_threshold: int = 10
    success_threshold: int = 3
    timeout_secs: float = 60.0
    enabled: bool = True


TransitionHook = Callable[[BreakerState, BreakerState], None]


@dataclass(slots=True)
class CircuitBreaker:
    config: BreakerConfig = field(default_factory=BreakerConfig)
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    opened_at: float = 0.0
    on_transition: TransitionHook | None = None
    clock: Callable[[], float] = time.monotonic

    def can_execute(self) -> bool:
        """True unless Open (HalfOpen lets probes through, as SMG)."""
        if not self.config.enabled or self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at >= self.config.timeout_secs:
                self._transition(BreakerState.HALF_OPEN)
                return True
            return False
        return True

    def record(self, success: bool) -> None:
        if not self.config.enabled:
            return
        if success:
            self.consecutive_failures = 0
            self.consecutive_successes += 1
            if self.state is BreakerState.HALF_OPEN:
                if self.consecutive_successes >= self.config.success_threshold:
                    self._transition(BreakerState.CLOSED)
            elif self.state is BreakerState.OPEN:
                # A late success from a request sent before the breaker opened does not close it.
                pass
        else:
            self.consecutive_successes = 0
            self.consecutive_failures += 1
            if self.state is BreakerState.HALF_OPEN or (self.state is BreakerState.CLOSED
                  and self.consecutive_failures >= self.config.failure_threshold):
                self._transition(BreakerState.OPEN)

    def _transition(self, to: BreakerState) -> None:
        frm = self.state
        if frm is to:
            return
        self.state = to
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        if to is BreakerState.OPEN:
            self.opened_at = self.clock()
        if self.on_transition is not None:
            self.on_transition(frm, to)

    def reset(self) -> None:
        self._transition(BreakerState.CLOSED)
