"""The PD (prefill/decode disaggregation) router for HTTP workers (smg-spec 5.1, vLLM flow after 5.2).

Per attempt: the prefill and the decode worker are chosen independently by their own policies; both are leased.

* SGLang: one body with `bootstrap_host/port/room` goes to both legs at once; both heads are awaited (a
  transport error on either leg aborts the other). The decode response is relayed to the client by the HTTP
  router's relay (`HttpRouter.relay`: a proxy call adopts the leg; backpressure, stall/total timeouts,
  client-gone); the prefill response is drained in the
  background, or read first when logprobs are requested (its `input_token_logprobs` are prepended to the
  decode's).
* vLLM (`--pd-backend vllm` or a prefill worker with runtime_type vllm): `pd_vllm.run_vllm`, sequential.

Retries (before any byte reached the client) re-select both workers and mint new rooms. Each leg's breaker
gets that leg's own outcome (a healthy decode is not blamed for a dead prefill, a small departure from SMG,
which records the final status on both). A prefill that answers an error status aborts the decode at once
(the decode would otherwise wait for a bootstrap that never comes). Leases are released exactly once: the
prefill's when its response is drained, the decode's (handed to the relay with the leg) when the relay ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herder.observability.metrics import CounterChild, HistogramChild, Metrics
from herder.policies import PolicyRegistry, RoutingSource
from herder.routing.context import RequestContext
from herder.routing.http import HttpRouter
from herder.routing.pd_body import inject_bootstrap, prefill_logprobs, wants_logprobs
from herder.routing.pd_legs import FirstChunk, Lease, MergedLogprobs, Retry, abort, abort_all, discard, send
from herder.routing.pd_vllm import run_vllm
from herder.routing.proxy import ProxyCall
from herder.routing.retry import RETRYABLE_STATUSES
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Reply
from herder.workers.pool import Exchange, ExchangeListener, UpstreamError
from herder.workers.worker import Worker

log = logging.getLogger("herder.pd")



@dataclass(slots=True)
class PdMetrics:
    """Pre-bound children of the smg_pd_* families for one (model, runtime)."""

    prefill_duration: HistogramChild
    ttft: HistogramChild


class PdTelemetry:
    """smg_pd_* updates (children bound once per model and runtime)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._bound: dict[tuple[str, str], PdMetrics] = {}
        self.bootstrap_failures: CounterChild = metrics.pd_bootstrap_failures.child
        self.kv_transfer_failures: CounterChild = metrics.pd_kv_transfer_failures.child

    def of(self, model: str | None, runtime: str) -> PdMetrics:
        key = (model or "default", runtime)
        bound = self._bound.get(key)
        if bound is None:
            m = self.metrics
            bound = self._bound[key] = PdMetrics(
                m.pd_prefill_duration.labels("pd", key[0], runtime), m.pd_ttft.labels("pd", key[0], runtime)
            )
        return bound


class PdRouter:
    """Routes inference requests to a prefill + decode pair of HTTP workers."""

    def __init__(
        self,
        http: HttpRouter,
        prefill_policies: PolicyRegistry,
        decode_policies: PolicyRegistry,
        metrics: Metrics,
        *,
        backend: str | None = None,
        fallback: Callable[[RequestContext], Any] | None = None,
    ) -> None:
        self.http = http
        self.sweeper = http.sweeper  # request deadlines; the gateway closes it at shutdown
        self.registry = http.registry
        self.retry = http.retry
        self.prefill_policies = prefill_policies
        self.decode_policies = decode_policies
        self.backend = backend
        self.telemetry = PdTelemetry(metrics)
        # Another router for this request (gRPC workers, a model without PD workers), or None for HTTP PD.
        self.fallback = fallback
        self._background: set[asyncio.Task[None]] = set()

    # -- selection ------------------------------------------------------------------------------------------------
    def select_pair(
        self,
        model: str | None,
        info: RoutingSource,
        avoid: set[Worker],
    ) -> tuple[Worker, Worker]:
        """The prefill worker by the prefill policy and, independently, the decode worker by the decode
        policy; workers in `avoid` are skipped while another candidate remains. 503 when a side has none."""
        prefills = self.registry.available(model, "prefill")
        decodes = self.registry.available(model, "decode")
        if avoid:
            prefills = [w for w in prefills if w not in avoid] or prefills
            decodes = [w for w in decodes if w not in avoid] or decodes
        if not prefills or not decodes:
            side = "prefill" if not prefills else "decode"
            raise HttpError(
                503,
                errors.SERVER_SELECTION_FAILED,
                f"No available {side} workers" + (f" for model '{model}'" if model else ""),
            )
        prefill = self.prefill_policies.get(model, "prefill").select(prefills, info)
        decode = self.decode_policies.get(model, "decode").select(decodes, info)
        if prefill is None or decode is None:
            raise HttpError(503, errors.SERVER_SELECTION_FAILED, "Policy selected no worker")
        prefill.processed += 1
        decode.processed += 1
        return prefill, decode

    def runtime_of(self, prefill: Worker) -> str:
        if self.backend is not None:
            return self.backend
        return "vllm" if prefill.runtime_type == "vllm" else "sglang"

    # -- routing -------------------------------------------------------------------------------------------------
    async def route(self, ctx: RequestContext, reply: Reply) -> None:
        if self.fallback is not None:
            other = self.fallback(ctx)
            if other is not None:
                await other.route(ctx, reply)
                return
        hooks = self.http.hooks
        info = ctx  # the context is the policies' routing source (text built once, on first use)
        attempts = self.retry.attempts
        avoid: set[Worker] = set()
        for attempt in range(attempts):
            prefill, decode = self.select_pair(ctx.model, info, avoid)
            if hooks.on_selected is not None:
                hooks.on_selected(ctx, prefill)
                hooks.on_selected(ctx, decode)
            if reply.closed:
                return
            p_lease, d_lease = Lease(prefill), Lease(decode)
            try:
                if self.runtime_of(prefill) == "vllm":
                    outcome = await run_vllm(self, ctx, reply, p_lease, d_lease)
                else:
                    outcome = await self._sglang(ctx, reply, p_lease, d_lease)
            finally:
                d_lease.release()
                if not p_lease.background:
                    p_lease.release()
            if outcome is None:
                return
            if hooks.on_attempt_failed is not None:
                hooks.on_attempt_failed(ctx, outcome.failed, outcome.error.code)
            if attempt + 1 >= attempts or reply.closed:
                if attempts > 1 and hooks.on_exhausted is not None:
                    hooks.on_exhausted(ctx, outcome.failed)
                raise outcome.error
            avoid = {outcome.failed}
            await self.http.backoff(ctx, outcome.failed, attempt, outcome.retry_after)

    def record(self, worker: Worker, success: bool) -> None:
        self.http.record(worker, success)

    def leg_failed(self, worker: Worker, exc: UpstreamError, leg: str) -> Retry:
        """A transport failure of one leg: its breaker, and the error the client gets if retries run out."""
        self.record(worker, False)
        status = 504 if exc.timeout else 502
        code = errors.UPSTREAM_TIMEOUT if exc.timeout else errors.PD_REQUEST_FAILED
        return Retry(
            worker,
            HttpError(status, code, f"PD disaggregation request failed: {leg} worker {worker.url}: {exc}"),
        )

    def status_failed(self, ctx: RequestContext, worker: Worker, ex: Exchange, leg: str) -> Retry | None:
        """A retryable error status on one leg: a Retry (breaker failure recorded), else None."""
        if ex.status not in RETRYABLE_STATUSES:
            return None
        self.record(worker, False)
        if self.http.hooks.on_outcome is not None:
            self.http.hooks.on_outcome(ctx, worker, ex.status, None)
        retry_after = ex.header(b"retry-after") if ex.status in (429, 503) else None
        return Retry(
            worker,
            HttpError(ex.status, errors.PREFILL_ERROR if leg == "prefill" else errors.DECODE_ERROR,
                      f"{leg} worker {worker.url} answered {ex.status}"),
            retry_after,
        )

    async def _sglang(
        self, ctx: RequestContext, reply: Reply, p_lease: Lease, d_lease: Lease
    ) -> Retry | None:
        prefill, decode = p_lease.worker, d_lease.worker
        body, _rooms = inject_bootstrap(ctx.endpoint, ctx.parsed, prefill.host, prefill.bootstrap_port)
        pm = self.telemetry.of(ctx.model, "sglang")
        timeout = self.http.request_timeout or None
        started = time.monotonic()
        p_box: list[Exchange] = []
        d_box: list[Exchange] = []
        loop = asyncio.get_running_loop()
        p_task = loop.create_task(send(prefill.pool, ctx.upstream_request(prefill, body), timeout, p_box))
        d_task = loop.create_task(send(decode.pool, ctx.upstream_request(decode, body), timeout, d_box))

        def stop_both() -> None:
            p_task.cancel()
            d_task.cancel()
            abort_all(p_box)
            abort_all(d_box)

        gone = loop.create_future()
        reply.on_close = lambda: None if gone.done() else gone.set_result(None)
        try:
            pending: set[asyncio.Future[Any]] = {p_task, d_task}
            while pending:
                done, _ = await asyncio.wait(pending | {gone}, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if gone.done():
                    stop_both()
                    ctx.error_code = errors.CLIENT_DISCONNECTED
                    return None
                for task, worker, leg in ((p_task, prefill, "prefill"), (d_task, decode, "decode")):
                    exc = task.exception() if task in done else None
                    if exc is not None:
                        stop_both()
                        if not isinstance(exc, UpstreamError):
                            raise exc
                        # The pair cannot complete its KV handoff: the other leg is cancelled too.
                        self.telemetry.bootstrap_failures.inc()
                        return self.leg_failed(worker, exc, leg)
                if p_task in done and p_task.result().status >= 400:
                    # The decode would wait for a KV transfer that never comes: stop it now.
                    self.telemetry.bootstrap_failures.inc()
                    p_ex = p_task.result()
                    d_task.cancel()
                    abort_all(d_box)
                    retry = self.status_failed(ctx, prefill, p_ex, "prefill")
                    if retry is not None:
                        abort(p_ex)
                        return retry
                    await self.http.relay(ctx, p_lease, p_ex, reply)  # the relay takes over reply.on_close
                    return None
        except BaseException:
            stop_both()
            raise
        finally:
            gone.cancel()
            if not reply.started:
                reply.on_close = None
        p_ex, d_ex = p_task.result(), d_task.result()
        if not d_ex.streaming:
            pm.ttft.observe(time.monotonic() - started)
        retry = self.status_failed(ctx, decode, d_ex, "decode")
        if retry is not None:
            abort(d_ex)
            abort(p_ex)
            return retry
        merge: dict[int, list[Any]] | None = None
        if wants_logprobs(ctx.endpoint, ctx.parsed):

            def both_gone() -> None:
                abort(p_ex)
                abort(d_ex)

            reply.on_close = both_gone
            merge = await self._read_prefill(p_lease, p_ex, started, pm)
            reply.on_close = None
            if reply.closed:
                abort(d_ex)
                ctx.error_code = errors.CLIENT_DISCONNECTED
                return None
        else:
            self._drain_later(p_lease, p_ex, started, pm)

        def first_chunk() -> None:
            pm.ttft.observe(time.monotonic() - started)

        on_first = first_chunk if d_ex.streaming else None

        def through(call: ProxyCall) -> ExchangeListener:
            return MergedLogprobs(call, merge, on_first) if merge else FirstChunk(call, on_first)

        try:
            await self.http.relay(ctx, d_lease, d_ex, reply, through if merge or on_first else None)
        finally:
            if ctx.error_code == errors.CLIENT_DISCONNECTED:
                abort(p_ex)  # disconnect closes both legs
        return None

    async def _read_prefill(
        self, lease: Lease, ex: Exchange, started: float, pm: PdMetrics
    ) -> dict[int, list[Any]]:
        """Read the whole prefill response (needed for the logprob merge) and release its lease."""
        parts: list[bytes] = []
        if ex.streaming:
            ex.set_sink(parts.append)
        try:
            await asyncio.wait_for(asyncio.shield(ex.done), self.http.request_timeout or None)
        except (UpstreamError, TimeoutError) as exc:
            abort(ex)
            self.record(lease.worker, False)
            log.debug("prefill %s failed while read for logprobs: %s", lease.worker.url, exc)
            lease.release()
            return {}
        pm.prefill_duration.observe(time.monotonic() - started)
        self.record(lease.worker, ex.status < 400)
        lease.release()
        return prefill_logprobs(b"".join(parts) if ex.streaming else ex.body(), ex.streaming)

    def _drain_later(self, lease: Lease, ex: Exchange, started: float, pm: PdMetrics) -> None:
        """Discard the prefill response in the background; its end releases the prefill lease."""
        if ex.streaming:
            ex.set_sink(discard)

        async def drain() -> None:
            try:
                await asyncio.wait_for(asyncio.shield(ex.done), self.http.request_timeout or None)
                pm.prefill_duration.observe(time.monotonic() - started)
                self.record(lease.worker, ex.status < 400)
            except (UpstreamError, TimeoutError):
                abort(ex)
                self.record(lease.worker, False)
            except asyncio.CancelledError:
                abort(ex)
                raise
            finally:
                lease.release()

        lease.background = True
        task = asyncio.get_running_loop().create_task(drain())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
