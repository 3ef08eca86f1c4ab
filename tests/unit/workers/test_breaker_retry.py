"""Circuit breaker transitions and retry backoff (SMG semantics)."""

from __future__ import annotations

from herder.routing.retry import RETRYABLE_STATUSES, RetryConfig
from herder.workers.breaker import BreakerConfig, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_timeout() -> None:
    clock = Clock()
    transitions: list[tuple[BreakerState, BreakerState]] = []
    cb = CircuitBreaker(BreakerConfig(failure_threshold=10, success_threshold=3, timeout_secs=60), clock=clock,
                        on_transition=lambda a, b: transitions.append((a, b)))
    for _ in range(9):
        cb.record(False)
    assert cb.state is BreakerState.CLOSED
    cb.record(True)  # a success resets the consecutive count
    for _ in range(9):
        cb.record(False)
    assert cb.can_execute()
    cb.record(False)
    assert cb.state is BreakerState.OPEN and not cb.can_execute()
    clock.now = 59.9
    assert not cb.can_execute()
    clock.now = 60.0
    assert cb.can_execute() and cb.state is BreakerState.HALF_OPEN
    cb.record(True)
    cb.record(True)
    assert cb.state is BreakerState.HALF_OPEN
    cb.record(True)
    assert cb.state is BreakerState.CLOSED
    assert transitions == [(BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
                           (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_half_open_failure_reopens() -> None:
    clock = Clock()
    cb = CircuitBreaker(BreakerConfig(failure_threshold=1, timeout_secs=1), clock=clock)
    cb.record(False)
    clock.now = 1
    assert cb.can_execute()
    cb.record(False)
    assert cb.state is BreakerState.OPEN and not cb.can_execute()


def test_disabled_breaker_never_opens() -> None:
    cb = CircuitBreaker(BreakerConfig(failure_threshold=1, enabled=False))
    for _ in range(5):
        cb.record(False)
    assert cb.can_execute()


def test_retryable_set_is_smgs() -> None:
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


def test_backoff_grows_caps_and_jitters() -> None:
    cfg = RetryConfig(initial_backoff_ms=50, backoff_multiplier=1.5, max_backoff_ms=30000, jitter_factor=0.0)
    assert [cfg.backoff_secs(k) for k in range(4)] == [0.05, 0.075, 0.112, 0.169]
    assert cfg.backoff_secs(100) == 30.0
    jittered = RetryConfig(jitter_factor=0.2)
    values = {jittered.backoff_secs(0) for _ in range(200)}
    assert all(0.04 <= v <= 0.06 for v in values) and len(values) > 3


def test_retry_after_honoured_and_capped() -> None:
    cfg = RetryConfig(jitter_factor=0.0, max_backoff_ms=2000)
    assert cfg.delay_secs(0, b"1") == 1.0
    assert cfg.delay_secs(0, b"100") == 2.0
    assert cfg.delay_secs(0, b"Wed, 21 Oct 2015 07:28:00 GMT") == 0.05
    assert RetryConfig(max_retries=5, enabled=False).attempts == 1
    assert RetryConfig(max_retries=0).attempts == 1
