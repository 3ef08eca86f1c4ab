"""vLLM PD over HTTP: sequential legs with `kv_transfer_params` (the NIXL convention of vLLM's disagg proxy).

1. Prefill: the client's request with max_tokens=1, n=1, stream=false and
   `kv_transfer_params = {"do_remote_decode": true, "do_remote_prefill": false, ...}`; read the whole answer.
2. Decode: the client's request plus the `kv_transfer_params` the prefill returned (its KV location); relayed
   to the client by the HTTP router's relay, streamed or not.

A prefill that returns no `kv_transfer_params` counts as a KV transfer failure; the decode then gets none and
computes the prompt itself (what vLLM does), so the client still gets an answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from herder.routing.context import RequestContext
from herder.routing.pd_body import vllm_decode_body, vllm_kv_params, vllm_prefill_body
from herder.routing.pd_legs import FirstChunk, Lease, Retry, abort, abort_all, send
from herder.server import errors
from herder.server.http import Reply
from herder.workers.pool import Exchange, UpstreamError

if TYPE_CHECKING:
    from herder.routing.pd import PdRouter


async def _watched(box: list[Exchange], reply: Reply, coro: asyncio.Future[Exchange]) -> Exchange | None:
    """Await a leg's head, or None if the client left first (the leg's connection is closed)."""
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    reply.on_close = lambda: None if gone.done() else gone.set_result(None)
    try:
        await asyncio.wait({coro, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reply.on_close = None
        gone.cancel()
    if coro.done():
        return coro.result()  # raises the leg's UpstreamError
    coro.cancel()
    abort_all(box)
    return None


async def run_vllm(
    router: PdRouter, ctx: RequestContext, reply: Reply, p_lease: Lease, d_lease: Lease
) -> Retry | None:
    """One vLLM PD attempt; returns a Retry when a leg failed before the client saw anything."""
    prefill, decode = p_lease.worker, d_lease.worker
    tel = router.telemetry
    pm = tel.of(ctx.model, "vllm")
    timeout = router.http.request_timeout or None
    loop = asyncio.get_running_loop()
    started = time.monotonic()

    # 1. prefill, to completion
    box: list[Exchange] = []
    body = vllm_prefill_body(ctx.endpoint, ctx.parsed)
    task = loop.create_task(send(prefill.pool, ctx.upstream_request(prefill, body), timeout, box))
    try:
        p_ex = await _watched(box, reply, task)
    except UpstreamError as exc:
        tel.kv_transfer_failures.inc()
        return router.leg_failed(prefill, exc, "prefill")
    if p_ex is None:
        ctx.error_code = errors.CLIENT_DISCONNECTED
        return None
    if p_ex.status >= 400:
        retry = router.status_failed(ctx, prefill, p_ex, "prefill")
        if retry is not None:
            abort(p_ex)
            return retry
        await router.http.relay(ctx, p_lease, p_ex, reply)  # a client error (400...) is the answer
        return None
    parts: list[bytes] = []
    if p_ex.streaming:
        p_ex.set_sink(parts.append)
    try:
        await asyncio.wait_for(asyncio.shield(p_ex.done), timeout)
    except (UpstreamError, TimeoutError) as exc:
        abort(p_ex)
        tel.kv_transfer_failures.inc()
        err = (
            exc
            if isinstance(exc, UpstreamError)
            else UpstreamError("prefill timed out", before_response=False, timeout=True)
        )
        return router.leg_failed(prefill, err, "prefill")
    router.record(prefill, True)
    p_lease.release()
    pm.prefill_duration.observe(time.monotonic() - started)
    kv = vllm_kv_params(b"".join(parts) if p_ex.streaming else p_ex.body())
    if kv is None:
        tel.kv_transfer_failures.inc()

    # 2. decode, relayed
    box = []
    task = loop.create_task(
        send(
            decode.pool,
            ctx.upstream_request(decode, vllm_decode_body(ctx.parsed, kv)),
            timeout,
            box,
        )
    )
    try:
        d_ex = await _watched(box, reply, task)
    except UpstreamError as exc:
        return router.leg_failed(decode, exc, "decode")
    if d_ex is None:
        ctx.error_code = errors.CLIENT_DISCONNECTED
        return None
    retry = router.status_failed(ctx, decode, d_ex, "decode")
    if retry is not None:
        abort(d_ex)
        if kv is not None:
            tel.kv_transfer_failures.inc()
        return retry
    if not d_ex.streaming:
        pm.ttft.observe(time.monotonic() - started)
        await router.http.relay(ctx, d_lease, d_ex, reply)
        return None

    def first() -> None:
        pm.ttft.observe(time.monotonic() - started)

    await router.http.relay(ctx, d_lease, d_ex, reply, lambda call: FirstChunk(call, first))
    return None
