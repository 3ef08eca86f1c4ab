"""Errors on the gRPC path: bad input is a 400 that never reaches the worker, gRPC statuses map to HTTP,
retries before the first event, SSE error events after it, and client disconnects send Abort."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import openai
import pytest

from herder.server.app import Gateway
from herder.sim.grpc_worker import SimGrpcWorker
from tests.conftest import GatewayFactory
from tests.integration.grpc.conftest import WorkerFactory
from tests.integration.grpc.grpc_helpers import MODEL, base_url, client_for, total_load
from tests.waiting import wait_for

Env = tuple[Gateway, SimGrpcWorker, openai.AsyncOpenAI]
USER = [{"role": "user", "content": "hi"}]


async def test_unknown_model_is_404(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=USER)
    assert worker.requests == 0


@pytest.mark.parametrize("extra", [
    {"temperature": -1}, {"top_p": 0}, {"top_k": 0}, {"n": 0}, {"max_tokens": -3}, {"top_logprobs": 3},
    {"logprobs": True, "top_logprobs": 50}, {"stop": [1, 2]}, {"stop_token_ids": ["a"]},
    {"response_format": {"type": "yaml"}}, {"regex": "a", "ebnf": "root ::= 'a'"},
    {"tool_choice": {"type": "function", "function": {"name": "missing"}}},
    {"tool_choice": "required"}, {"chat_template_kwargs": "x"}, {"logit_bias": {"x": 1}},
])  # fmt: skip
async def test_bad_parameters_are_400_before_the_worker(grpc_env: Env, extra: dict[str, object]) -> None:
    gw, worker, _ = grpc_env
    async with httpx.AsyncClient() as http:
        r = await http.post(
            base_url(gw) + "/v1/chat/completions", json={"model": MODEL, "messages": USER, **extra}
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_request", "missing_required_field")
    assert r.headers["x-smg-error-code"] == r.json()["error"]["code"]
    assert worker.requests == 0


async def test_image_parts_are_400(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert worker.requests == 0


async def test_prompt_longer_than_context_is_400(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    worker = await make_grpc_worker(max_context_length=32)
    gw = await make_gateway(worker_urls=[worker.url])
    with pytest.raises(openai.BadRequestError):
        await client_for(gw).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x " * 100}]
        )
    assert worker.requests == 0


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.INTERNAL, 500),
])  # fmt: skip
async def test_worker_grpc_status_maps_to_http(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory, code: grpc.StatusCode, status: int
) -> None:
    worker = await make_grpc_worker()
    gw = await make_gateway(worker_urls=[worker.url], disable_retries=True)
    worker.fail_next(code, "engine says no")
    async with httpx.AsyncClient() as http:
        r = await http.post(
            base_url(gw) + "/v1/chat/completions", json={"model": MODEL, "messages": USER, "max_tokens": 3}
        )
        assert r.status_code == status
        assert "engine says no" in r.json()["error"]["message"]
        # Streaming: the error comes before the first byte, so it is still a plain HTTP error.
        worker.fail_next(code, "engine says no")
        r = await http.post(
            base_url(gw) + "/v1/chat/completions",
            json={"model": MODEL, "messages": USER, "max_tokens": 3, "stream": True},
        )
        assert r.status_code == status
    assert total_load(gw) == 0


async def test_unavailable_is_retried_before_the_first_event(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    worker = await make_grpc_worker()
    gw = await make_gateway(worker_urls=[worker.url], retry_initial_backoff_ms=1)
    worker.fail_next(grpc.StatusCode.UNAVAILABLE, "warming up")
    worker.script("recovered")
    resp = await client_for(gw).chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content == "recovered"
    assert worker.requests == 2
    gw2 = await make_gateway(worker_urls=[worker.url], disable_retries=True)
    worker.fail_next(grpc.StatusCode.UNAVAILABLE, "down")
    with pytest.raises(openai.InternalServerError) as info:
        await client_for(gw2).chat.completions.create(model=MODEL, messages=USER)
    assert info.value.status_code == 503
    assert total_load(gw) == 0 and total_load(gw2) == 0


async def test_failure_after_the_first_byte_is_an_sse_error_then_done(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    worker = await make_grpc_worker(itl_ms=20)
    gw = await make_gateway(worker_urls=[worker.url])
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            base_url(gw) + "/v1/chat/completions",
            json={"model": MODEL, "messages": USER, "max_tokens": 500, "stream": True},
        ) as r,
    ):
        assert r.status_code == 200
        lines = []
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                lines.append(line)
                if len(lines) == 3:
                    await worker.stop(0)  # the engine dies mid-stream
    assert lines[-1] == "data: [DONE]"
    assert '"error"' in lines[-2]
    assert total_load(gw) == 0


async def test_client_disconnect_mid_stream_sends_abort(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    worker = await make_grpc_worker(itl_ms=10)
    gw = await make_gateway(worker_urls=[worker.url])
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            base_url(gw) + "/v1/chat/completions",
            json={"model": MODEL, "messages": USER, "max_tokens": 2000, "stream": True},
        ) as r,
    ):
        seen = 0
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                seen += 1
                if seen == 3:
                    break  # leaving the block closes the connection mid-stream
    rid = worker.received[-1].request_id
    await asyncio.wait_for(worker.wait_until(lambda: rid in worker.aborted_ids), 5)
    await wait_for(lambda: total_load(gw) == 0 and worker.running == 0)


async def test_client_disconnect_non_streaming_sends_abort(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    worker = await make_grpc_worker(itl_ms=10)
    gw = await make_gateway(worker_urls=[worker.url])
    async with httpx.AsyncClient(timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                base_url(gw) + "/v1/completions", json={"model": MODEL, "prompt": "hello", "max_tokens": 2000}
            )
    rid = worker.received[-1].request_id
    await asyncio.wait_for(worker.wait_until(lambda: rid in worker.aborted_ids), 5)
    await wait_for(lambda: total_load(gw) == 0)
