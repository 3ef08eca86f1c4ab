"""Fixtures for the gRPC path: simulated SGLang/vLLM gRPC workers (real Qwen3 tokenizer) behind a gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai
import pytest

from herder.server.app import Gateway
from herder.sim.grpc_worker import SimGrpcWorker, start_grpc_worker
from tests.conftest import GatewayFactory
from tests.integration.grpc.grpc_helpers import MODEL, client_for

WorkerFactory = Callable[..., Awaitable[SimGrpcWorker]]


@pytest.fixture
async def make_grpc_worker() -> AsyncIterator[WorkerFactory]:
    """`await make_grpc_worker("sglang", **opts)` -> a started simulated worker serving MODEL."""
    started: list[SimGrpcWorker] = []

    async def factory(runtime: str = "sglang", **opts: Any) -> SimGrpcWorker:
        opts.setdefault("served_model_name", MODEL)
        opts.setdefault("max_context_length", 8192)
        worker = await start_grpc_worker(runtime, **opts)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield factory
    for w in started:
        await w.stop(0)


@pytest.fixture
async def grpc_env(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> tuple[Gateway, SimGrpcWorker, openai.AsyncOpenAI]:
    """One SGLang-flavoured worker, a gateway with the qwen3 parsers, and an openai client."""
    worker = await make_grpc_worker("sglang")
    gw = await make_gateway(worker_urls=[worker.url], policy="round_robin")
    return gw, worker, client_for(gw)
