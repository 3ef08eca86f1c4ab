"""The gRPC router in PD mode: the gRPC pipelines (chat, completions, generate) unchanged, with `open_stream`
running each backend request on a prefill + decode pair (`pd_grpc.pd_generate`) instead of one worker.

Pair choice: `PdRouter.select_pair` on the token ids (prefill and decode policies, independently). Both workers
are leased: the decode's lease and outcome belong to the returned `Stream` (released once by `Stream.close`);
the prefill's are settled when the PD call ends (its own outcome: a failure only if the prefill leg failed).
Retries before the first decode event re-select both and mint a new room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from herder.policies import RoutingInfo
from herder.routing.context import RequestContext
from herder.routing.grpc.client import GrpcCallError
from herder.routing.grpc.router import GrpcRouter, Stream, http_error
from herder.routing.grpc.runtimes import GenerateEvent
from herder.routing.grpc.sampling import GenerateParams
from herder.routing.pd import PdRouter
from herder.routing.pd_grpc import failed_leg, pd_generate
from herder.routing.pd_legs import Lease
from herder.routing.retry import RETRYABLE_STATUSES
from herder.server.http import Reply
from herder.workers.worker import Worker


class PdGrpcRouter(GrpcRouter):
    """A `GrpcRouter` whose streams run on prefill/decode pairs (for models served by PD gRPC workers)."""

    def __init__(self, base: GrpcRouter, pd: PdRouter) -> None:
        super().__init__(
            base.registry,
            base.policies,
            base.retry,
            base.state,
            hooks=base.hooks,
            request_timeout=base.request_timeout or 0.0,
        )
        self.on_breaker = base.on_breaker
        self.pd = pd

    def _hint(self) -> str | None:
        cfg = self.state.config
        return getattr(cfg, "backend", None) or getattr(cfg, "pd_backend", None)

    async def _pd_events(
        self, ctx: RequestContext, lease: Lease, decode: Worker, params: GenerateParams
    ) -> AsyncGenerator[GenerateEvent, None]:
        prefill_failed = False  # a worker-side failure of the prefill leg (client errors do not count)
        try:
            async for event in pd_generate(
                lease.worker,
                decode,
                params,
                timeout=self.request_timeout,
                telemetry=self.pd.telemetry,
                model=ctx.model,
                runtime_hint=self._hint(),
            ):
                yield event
        except GrpcCallError as exc:
            prefill_failed = failed_leg(exc) == "prefill" and exc.http_status in RETRYABLE_STATUSES
            raise
        finally:
            if not lease.released:
                lease.release()
                self.record(lease.worker, not prefill_failed)

    async def open_stream(self, ctx: RequestContext, params: GenerateParams, reply: Reply) -> Stream:
        if not self.registry.workers_for(ctx.model, "prefill"):
            return await super().open_stream(ctx, params, reply)
        hooks = self.hooks
        attempts = self.retry.attempts
        avoid: set[Worker] = set()
        info = RoutingInfo(tokens=params.input_ids, headers=ctx.headers)
        for attempt in range(attempts):
            prefill, decode = self.pd.select_pair(ctx.model, info, avoid)
            if hooks.on_selected is not None:
                hooks.on_selected(ctx, prefill)
                hooks.on_selected(ctx, decode)
            lease = Lease(prefill)
            decode.load += 1  # released by Stream.close
            events = self._pd_events(ctx, lease, decode, params)
            try:
                first: GenerateEvent | None = await events.__anext__()
            except StopAsyncIteration:
                first = None
            except GrpcCallError as exc:
                decode.load -= 1
                leg = failed_leg(exc)
                worker = prefill if leg == "prefill" else decode
                err = http_error(exc, worker)
                retryable = exc.http_status in RETRYABLE_STATUSES
                if leg != "prefill":
                    self.record(decode, not retryable)
                if retryable and hooks.on_attempt_failed is not None:
                    hooks.on_attempt_failed(ctx, worker, err.code)
                if retryable and attempt + 1 < attempts and not reply.closed:
                    avoid = {worker}
                    delay = self.retry.delay_secs(attempt, None)
                    if hooks.on_retry is not None:
                        hooks.on_retry(ctx, worker, attempt, delay)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
                if retryable and attempts > 1 and hooks.on_exhausted is not None:
                    hooks.on_exhausted(ctx, worker)
                if hooks.on_outcome is not None:
                    hooks.on_outcome(ctx, worker, err.status, err.code)
                raise err from exc
            except BaseException:
                decode.load -= 1
                with contextlib.suppress(BaseException):
                    await events.aclose()
                raise
            return Stream(self, ctx, decode, events, first)
        raise AssertionError("unreachable: the last attempt raises")
