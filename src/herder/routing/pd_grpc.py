"""PD execution over gRPC (smg-spec 5.2): the piece the gRPC router calls once it has built the
`GenerateParams` and chosen a prefill and a decode worker (`PdRouter.select_pair` does the choosing).

    async for event in pd_generate(prefill, decode, params, telemetry=..., model=...):
        ...  # the decode's Chunk / Complete events, exactly as GrpcWorkerClient.generate yields them

* SGLang / TokenSpeed: parallel. Both copies carry `disaggregated_params` = (prefill host, its bootstrap port
  or the default 8998, a random room: int32 for SGLang's proto, 63-bit for TokenSpeed's). The prefill stream is
  drained concurrently; if it fails before the decode finished, the decode call is cancelled (and aborted on
  the worker) and the prefill's `GrpcCallError` is raised. A decode failure cancels the prefill.
* vLLM: sequential. The prefill copy runs with max_new_tokens=1, n=1, stream=False and
  `kv_transfer_params`; NIXL (default): `{"do_remote_decode": true, "do_remote_prefill": false}`, then the
  `kv_transfer_params` of the prefill's `Complete` go to the decode (not for n > 1). Mooncake (the prefill
  worker's label `kv_connector` = MooncakeConnector): a minted `transfer_id` on both sides, the decode also
  gets `remote_engine_id` (label `kv_engine_id`) and `remote_bootstrap_addr`, or legacy host/port without an
  engine id.
* TRT-LLM, MLX: `GrpcCallError` INVALID_ARGUMENT (the client gets 400 `invalid_request`).

Each worker's `GrpcWorkerClient` is `worker.client` (created on first use, as the gRPC router does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from herder.routing.grpc.client import GrpcCallError, GrpcWorkerClient
from herder.routing.grpc.prober import client_of
from herder.routing.grpc.runtimes import Complete, GenerateEvent
from herder.routing.grpc.sampling import DEFAULT_BOOTSTRAP_PORT, DisaggregatedParams, GenerateParams
from herder.routing.pd_body import new_room
from herder.workers.worker import Worker

if TYPE_CHECKING:
    from herder.routing.pd import PdTelemetry

PARALLEL_RUNTIMES = ("sglang", "tokenspeed")
NIXL_PREFILL: dict[str, Any] = {"do_remote_decode": True, "do_remote_prefill": False}
_rng = random.SystemRandom()


def _client(worker: Worker, hint: str | None) -> GrpcWorkerClient:
    if worker.connection_mode != "grpc":
        raise GrpcCallError.of(grpc.StatusCode.INVALID_ARGUMENT, f"{worker.url} is not a gRPC worker")
    return client_of(worker, hint)


def failed_leg(exc: BaseException) -> str | None:
    """Which leg ("prefill" / "decode") a `pd_generate` failure came from."""
    return getattr(exc, "pd_leg", None)


def _tag(exc: BaseException, leg: str) -> None:
    if getattr(exc, "pd_leg", None) is None:
        exc.pd_leg = leg  # type: ignore[attr-defined]


def room_for(runtime: str) -> int:
    """SGLang's proto carries the room as int32; TokenSpeed's as 63 bits."""
    return _rng.getrandbits(31) if runtime == "sglang" else new_room()


async def pd_generate(
    prefill: Worker,
    decode: Worker,
    params: GenerateParams,
    *,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] | None = None,
    telemetry: PdTelemetry | None = None,
    model: str | None = None,
    runtime_hint: str | None = None,
) -> AsyncIterator[GenerateEvent]:
    """Run one PD request over gRPC; yields the decode's events. See the module docstring. A failure
    carries the leg it came from (`failed_leg(exc)`)."""
    p_client, d_client = _client(prefill, runtime_hint), _client(decode, runtime_hint)
    try:
        runtime = await d_client.detect()
    except GrpcCallError as exc:
        _tag(exc, "decode")
        raise
    gen: AsyncGenerator[GenerateEvent, None]
    if runtime in PARALLEL_RUNTIMES:
        gen = _parallel(prefill, p_client, d_client, params, runtime, timeout, metadata, telemetry, model)
    elif runtime == "vllm":
        gen = _sequential(prefill, p_client, d_client, params, timeout, metadata, telemetry, model)
    else:
        raise GrpcCallError(
            "INVALID_ARGUMENT", f"PD disaggregation is not supported for {runtime} workers", 400
        )
    async with contextlib.aclosing(gen):
        async for event in gen:
            yield event


async def _drain(events: AsyncIterator[GenerateEvent]) -> list[Complete]:
    """Consume the prefill leg; its failures are tagged as the prefill's."""
    done: list[Complete] = []
    try:
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if isinstance(event, Complete):
                    done.append(event)
    except GrpcCallError as exc:
        _tag(exc, "prefill")
        raise
    return done


async def _parallel(
    prefill: Worker,
    p_client: GrpcWorkerClient,
    d_client: GrpcWorkerClient,
    params: GenerateParams,
    runtime: str,
    timeout: float | None,
    metadata: Sequence[tuple[str, str]] | None,
    telemetry: PdTelemetry | None,
    model: str | None,
) -> AsyncGenerator[GenerateEvent, None]:
    port = prefill.bootstrap_port if prefill.bootstrap_port is not None else DEFAULT_BOOTSTRAP_PORT
    boot = DisaggregatedParams(prefill.host, port, room_for(runtime))
    both = dataclasses.replace(params, disaggregated_params=boot)
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    p_task = loop.create_task(_drain(p_client.generate(both, timeout=timeout, metadata=metadata)))
    d_events = d_client.generate(both, timeout=timeout, metadata=metadata)
    first = True
    try:
        while True:
            nxt: asyncio.Future[GenerateEvent] = asyncio.ensure_future(anext(d_events))  # type: ignore[arg-type]
            if not p_task.done():
                racing: set[asyncio.Future[Any]] = {nxt, p_task}
                await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                if p_task.done() and telemetry is not None and p_task.exception() is None:
                    telemetry.of(model, runtime).prefill_duration.observe(time.monotonic() - started)
                if p_task.done() and p_task.exception() is not None and not nxt.done():
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, GrpcCallError):
                        await nxt
                    if telemetry is not None:
                        telemetry.bootstrap_failures.inc()
                    raise p_task.exception()  # type: ignore[misc]
            try:
                event = await nxt
            except StopAsyncIteration:
                break
            except GrpcCallError as exc:
                _tag(exc, "decode")
                raise
            if first and telemetry is not None:
                telemetry.of(model, runtime).ttft.observe(time.monotonic() - started)
            first = False
            yield event
        await p_task  # the decode finished: the prefill has too, or fails now
    finally:
        if not p_task.done():
            p_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, GrpcCallError):
            await p_task
        await d_events.aclose()  # type: ignore[attr-defined]


def _vllm_params(prefill: Worker, params: GenerateParams) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(prefill kv_transfer_params, decode kv_transfer_params or None = relay what the prefill returns)."""
    connector = prefill.labels.get("kv_connector", "")
    if connector.lower().startswith("mooncake"):
        tid = uuid.uuid4().hex
        engine = prefill.labels.get("kv_engine_id")
        decode: dict[str, Any] = {"do_remote_decode": False, "do_remote_prefill": True, "transfer_id": tid}
        port = prefill.bootstrap_port if prefill.bootstrap_port is not None else DEFAULT_BOOTSTRAP_PORT
        if engine:
            decode["remote_engine_id"] = engine
            decode["remote_bootstrap_addr"] = f"http://{prefill.host}:{port}"
        else:
            decode["remote_host"], decode["remote_port"] = prefill.host, port
        return {"do_remote_decode": True, "do_remote_prefill": False, "transfer_id": tid}, decode
    return dict(NIXL_PREFILL), None


async def _sequential(
    prefill: Worker,
    p_client: GrpcWorkerClient,
    d_client: GrpcWorkerClient,
    params: GenerateParams,
    timeout: float | None,
    metadata: Sequence[tuple[str, str]] | None,
    telemetry: PdTelemetry | None,
    model: str | None,
) -> AsyncGenerator[GenerateEvent, None]:
    p_kv, d_kv = _vllm_params(prefill, params)
    p_params = dataclasses.replace(params, max_new_tokens=1, n=1, stream=False, kv_transfer_params=p_kv)
    started = time.monotonic()
    done = await _drain(p_client.generate(p_params, timeout=timeout, metadata=metadata))
    if telemetry is not None:
        telemetry.of(model, "vllm").prefill_duration.observe(time.monotonic() - started)
    if d_kv is None:
        relayed = done[0].kv_transfer_params if done else None
        if relayed is None and telemetry is not None:
            telemetry.kv_transfer_failures.inc()
        d_kv = relayed if params.n <= 1 else None
    d_params = dataclasses.replace(params, kv_transfer_params=d_kv)
    first = True
    events = d_client.generate(d_params, timeout=timeout, metadata=metadata)
    try:
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if first and telemetry is not None:
                    telemetry.of(model, "vllm").ttft.observe(time.monotonic() - started)
                first = False
                yield event
    except GrpcCallError as exc:
        _tag(exc, "decode")
        raise
