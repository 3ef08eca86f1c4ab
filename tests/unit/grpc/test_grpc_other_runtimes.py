"""Detection falls through to the last runtime in the order (MLX), and the MLX wire parses into neutral
events; a minimal test-only MLX servicer built on the real generated stubs stands in for the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from smg_grpc_proto.generated import mlx_engine_pb2 as mlx
from smg_grpc_proto.generated import mlx_engine_pb2_grpc as mlx_grpc

from herder.routing.grpc import Chunk, Complete, GenerateParams, GrpcCallError, GrpcWorkerClient


class FakeMlx(mlx_grpc.MlxEngineServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.aborted: list[str] = []

    async def GetModelInfo(self, request: Any, context: Any) -> Any:
        return mlx.GetModelInfoResponse(
            model_path="/models/smollm2",
            served_model_name="smollm2-135m",
            max_context_length=2048,
            vocab_size=49152,
            eos_token_ids=[2],
            is_generation=True,
        )

    async def HealthCheck(self, request: Any, context: Any) -> Any:
        return mlx.HealthCheckResponse(healthy=True)

    async def Abort(self, request: Any, context: Any) -> Any:
        self.aborted.extend(request.request_ids)
        return mlx.AbortResponse()

    async def Generate(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        if not request.tokenized.input_ids:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty prompt")
        out = [10, 11, 12, 2]
        if request.stream:
            for t in out:
                yield mlx.GenerateResponse(
                    chunk=mlx.GenerateStreamChunk(
                        token_ids=[t], prompt_tokens=3, completion_tokens=out.index(t) + 1
                    )
                )
        yield mlx.GenerateResponse(
            complete=mlx.GenerateComplete(
                output_ids=out,
                finish_reason="stop",
                prompt_tokens=3,
                completion_tokens=4,
                matched_stop_token_id=2,
            )
        )


@pytest.fixture
async def mlx_server() -> AsyncIterator[tuple[str, FakeMlx]]:
    server = grpc.aio.server()
    fake = FakeMlx()
    mlx_grpc.add_MlxEngineServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"grpc://127.0.0.1:{port}", fake
    finally:
        await server.stop(0)


async def test_detects_mlx_after_the_others(mlx_server: tuple[str, FakeMlx]) -> None:
    url, _ = mlx_server
    async with GrpcWorkerClient(url) as c:
        assert await c.detect() == "mlx"
        info = await c.model_info()
        assert (info.model_id, info.context_length, info.eos_token_ids) == ("smollm2-135m", 2048, [2])
        assert await c.health() is True
        with pytest.raises(GrpcCallError) as err:
            await c.loads()
        assert err.value.grpc_code == "UNIMPLEMENTED"


@pytest.mark.parametrize("stream", [True, False])
async def test_mlx_generate(mlx_server: tuple[str, FakeMlx], stream: bool) -> None:
    url, fake = mlx_server
    async with GrpcWorkerClient(url, runtime_hint="mlx") as c:
        events = [
            e async for e in c.generate(GenerateParams("m1", [1, 2, 3], max_new_tokens=8, stream=stream))
        ]
    chunks = [t for e in events if isinstance(e, Chunk) for t in e.token_ids]
    done = [e for e in events if isinstance(e, Complete)]
    assert chunks == ([10, 11, 12, 2] if stream else [])
    assert len(done) == 1 and done[0].output_ids == [10, 11, 12, 2] and done[0].matched_stop == 2
    sp = fake.requests[-1].sampling_params
    assert (
        sp.HasField("temperature") and sp.temperature == pytest.approx(1.0) and sp.top_p == pytest.approx(1.0)
    )
    assert sp.max_tokens == 8


async def test_mlx_abort_takes_a_list(mlx_server: tuple[str, FakeMlx]) -> None:
    url, fake = mlx_server
    async with GrpcWorkerClient(url) as c:
        await c.abort(["a", "b"])
    assert fake.aborted == ["a", "b"]
