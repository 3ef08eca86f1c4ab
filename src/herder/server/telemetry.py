"""Wires the gateway's events to the SMG metrics (observability/metrics.py) with pre-bound children.

Per request the hot path pays: one HTTP counter, one histogram and one response counter; one router counter and
histogram; one selection counter; one breaker-outcome counter. Gauges that mirror state (in-flight per worker,
health, breaker state, pool size) are not updated per request: they are read from the registry at scrape time.
TTFT is the first content event of a stream; TPOT = (end - first token) / (completion tokens - 1), tokens from
the usage block when present (found by a byte search, parsed once after the stream), else the content events.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric

from herder.observability.logging import ACCESS_LOG
from herder.observability.metrics import CounterChild, Metrics, route_label
from herder.routing.context import RequestContext, StreamMeter
from herder.workers.breaker import BreakerState
from herder.workers.worker import Worker, WorkerStatus

if TYPE_CHECKING:
    from herder.server.app import Gateway

HttpToken = tuple[object, float]  # what http_begin hands http_end: the metric bundle and the start time
FLUSH_INTERVAL = 0.05  # seconds: the longest a finished request waits to be recorded when traffic stops

# OpenAI usage blocks list prompt_tokens before completion_tokens: one search finds both.
_USAGE_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)\s*,\s*"completion_tokens"\s*:\s*(\d+)')
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def usage_of(data: bytes) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) from the last usage block in `data`, without a JSON parse."""
    at = data.rfind(b'"usage"')
    if at < 0:
        return None
    both = _USAGE_TOKENS.search(data, at)
    if both is not None:
        return int(both.group(1)), int(both.group(2))
    p = _PROMPT_TOKENS.search(data, at)
    c = _COMPLETION_TOKENS.search(data, at)
    if p is None or c is None:
        return None
    return int(p.group(1)), int(c.group(1))


class Telemetry:
    def __init__(self, metrics: Metrics, gateway: Gateway, per_request: bool = True) -> None:
        """`per_request=False` (--disable-metrics) wires only the state gauges and health/breaker events."""
        self.metrics = metrics
        self.gw = gateway
        self.policy = gateway.config.policy
        self._selection: dict[tuple[str, str], CounterChild] = {}
        self._upstream: dict[tuple[int, str], CounterChild] = {}
        self._retries: dict[tuple[str, str], CounterChild] = {}
        self._exhausted: dict[tuple[str, str], CounterChild] = {}
        self._outcomes: dict[tuple[str, bool], CounterChild] = {}
        self._connections = metrics.http_connections_active.child
        # Requests answered but not yet recorded (`finished_later`): (ctx, status, error code, token, time, method,
        # path).
        self._pending: list[tuple[RequestContext, int, str, HttpToken | None, float, bytes, str]] = []
        hooks = gateway.router.hooks
        if not per_request:
            gateway.manager.on_probe.append(self.on_probe)
            gateway.registry.on_change.append(self.on_membership)
            return
        hooks.on_selected = self.on_selected
        hooks.on_outcome = self.on_outcome
        hooks.on_retry = self.on_retry
        hooks.on_attempt_failed = self.on_attempt_failed
        hooks.on_exhausted = lambda ctx, worker: self.on_exhausted(ctx, worker.worker_type)
        hooks.on_sent = self.flush
        gateway.manager.on_probe.append(self.on_probe)
        gateway.server.on_connection_change = self.on_connection_change
        gateway.registry.on_change.append(self.on_membership)
        gateway.router.on_breaker = self.on_breaker

    # -- per request -----------------------------------------------------------------------------------------
    def http_begin(self, method: bytes, path: str, template: str | None = None) -> HttpToken:
        """`template`: the route's label when the caller already knows it (inference routes)."""
        bundle = self.metrics.http_request(method, template if template is not None else route_label(path))
        bundle.count.value += 1  # counters are plain numbers: no method call per update on the hot path
        return bundle, time.monotonic()

    def http_end(self, token: HttpToken, status: int, error_code: str, method: bytes, path: str,
                 request_id: bytes | None, at: float = 0.0) -> None:
        """The HTTP metrics and the access-log line of one request (`at`: when it was answered; default now)."""
        bundle, started = token
        elapsed = (at or time.monotonic()) - started
        bundle.record(status, error_code, elapsed)  # type: ignore[attr-defined]
        if ACCESS_LOG.enabled:
            ACCESS_LOG.log(method.decode(), path, status, elapsed, request_id.decode() if request_id else None)

    def finished_later(self, ctx: RequestContext, status: int, error_code: str, token: HttpToken | None,
                       method: bytes, path: str) -> None:
        """`router_end` + `http_end` for a request answered just now, run by `flush`: the next time the gateway
        waits on a worker, or within `FLUSH_INTERVAL`, or before a scrape. This keeps the bookkeeping off the
        path of the next request on the same connection (at concurrency 1, it would wait)."""
        self._pending.append((ctx, status, error_code, token, time.monotonic(), method, path))

    def flush(self) -> None:
        """Record what `finished_later` queued."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        for ctx, status, error_code, token, at, method, path in pending:
            self.router_end(ctx, status, error_code or None, at)
            if token is not None:
                self.http_end(token, status, error_code, method, path, ctx.request_id, at)

    def router_end(self, ctx: RequestContext, status: int, error_code: str | None, now: float = 0.0) -> None:
        rm = self.metrics.router(ctx.model or "default", ctx.endpoint, ctx.stream)
        rm.requests.value += 1
        if not now:
            now = time.monotonic()
        rm.duration.observe(now - ctx.started_at)
        if error_code is not None:
            rm.error(error_code).inc()
            return
        meter = ctx.meter_state
        usage = usage_of(ctx.usage_tail) if ctx.usage_tail else None
        if usage is not None:
            rm.input_tokens.value += usage[0]
            rm.output_tokens.value += usage[1]
        if isinstance(meter, StreamMeter) and meter.first_token_at:
            rm.ttft.observe(meter.first_token_at - ctx.started_at)
            generated = usage[1] if usage is not None else meter.total_events()
            gen_time = now - meter.first_token_at
            rm.generation_duration.observe(gen_time)
            if generated > 1:
                rm.tpot.observe(gen_time / (generated - 1))

    # -- router hooks -------------------------------------------------------------------------------------------
    def on_selected(self, ctx: RequestContext, worker: Worker) -> None:
        key = (ctx.model or "default", worker.worker_type)
        child = self._selection.get(key)
        if child is None:
            child = self._selection[key] = self.metrics.worker_selection.labels(
                worker.worker_type, worker.connection_mode, key[0], self.policy)
        child.value += 1

    def on_outcome(self, ctx: RequestContext, worker: Worker, status: int, error_code: str | None) -> None:
        key = (status, error_code or "")
        child = self._upstream.get(key)
        if child is None:
            child = self._upstream[key] = self.metrics.router_upstream_responses.labels("http", str(status), key[1])
        child.value += 1

    def on_attempt_failed(self, ctx: RequestContext, worker: Worker, code: str) -> None:
        self.metrics.worker_errors.labels(worker.worker_type, worker.connection_mode, code).inc()

    def on_retry(self, ctx: RequestContext, worker: Worker, attempt: int, delay: float) -> None:
        key = (worker.worker_type, ctx.endpoint)
        child = self._retries.get(key)
        if child is None:
            child = self._retries[key] = self.metrics.worker_retries.labels(*key)
        child.inc()
        self.metrics.worker_retry_backoff.labels(str(attempt + 1)).observe(delay)

    def on_exhausted(self, ctx: RequestContext, worker_type: str) -> None:
        key = (worker_type, ctx.endpoint)
        child = self._exhausted.get(key)
        if child is None:
            child = self._exhausted[key] = self.metrics.worker_retries_exhausted.labels(*key)
        child.inc()

    def on_breaker(self, worker: Worker, success: bool) -> None:
        key = (worker.url, success)
        child = self._outcomes.get(key)
        if child is None:
            child = self._outcomes[key] = self.metrics.worker_cb_outcomes.labels(
                worker.url, "success" if success else "failure")
        child.value += 1

    def on_transition(self, worker: Worker, frm: BreakerState, to: BreakerState) -> None:
        self.metrics.worker_cb_transitions.labels(worker.url, frm.label, to.label).inc()

    # -- workers and connections ------------------------------------------------------------------------------
    def on_probe(self, worker: Worker, ok: bool) -> None:
        self.metrics.worker_health_checks.labels(worker.worker_type, "success" if ok else "failure").inc()

    def on_connection_change(self, delta: int) -> None:
        self._connections.inc(delta)

    def on_membership(self) -> None:
        for worker in self.gw.registry.workers.values():
            if worker.breaker.on_transition is None:
                worker.breaker.on_transition = lambda f, t, w=worker: self.on_transition(w, f, t)
        known = {w.url for w in self.gw.registry.workers.values()}
        for url in list(self.metrics._workers):
            if url not in known:
                self.metrics.remove_worker(url)

    def refresh_gauges(self) -> None:
        """Record queued request ends and mirror registry state into gauges (called before each scrape)."""
        self.flush()
        m = self.metrics
        pool: dict[tuple[str, str, str], int] = {}
        for worker in self.gw.registry.workers.values():
            wm = m.worker(worker.url)
            wm.requests_active.set(worker.load)
            wm.health.set(1.0 if worker.status is WorkerStatus.READY else 0.0)
            breaker = worker.breaker
            breaker.can_execute()  # applies the lazy Open -> HalfOpen transition
            wm.cb_state.set(float(breaker.state.value))
            wm.cb_consecutive_failures.set(breaker.consecutive_failures)
            wm.cb_consecutive_successes.set(breaker.consecutive_successes)
            for model in worker.models or ["*"]:
                key = (worker.worker_type, worker.connection_mode, model)
                pool[key] = pool.get(key, 0) + 1
        for (wt, cm, model), n in pool.items():
            m.worker_pool_size.labels(wt, cm, model).set(n)


class RefreshingSource:
    """What the /metrics listener collects from: refreshes the state gauges, then the registry's families."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterable[Metric]:
        self.telemetry.refresh_gauges()
        return self.telemetry.metrics.registry.collect()

    def exposition(self) -> bytes:
        self.telemetry.refresh_gauges()
        return self.telemetry.metrics.exposition()
