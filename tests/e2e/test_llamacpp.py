"""herder in front of a real llama.cpp worker (SmolLM2-135M on CPU): the openai SDK gets "Paris"."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.conftest import GatewayFactory

pytestmark = pytest.mark.e2e

# With llama.cpp's default SmolLM system prompt this 135M model rambles; a plain one makes it answer.
QUESTION = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]


async def test_chat_through_herder_answers_paris(make_gateway: GatewayFactory, llamacpp_url: str) -> None:
    gw = await make_gateway(worker_urls=[llamacpp_url], policy="round_robin")
    assert gw.registry.models() == ["smollm2-135m"]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key="x", max_retries=0)
    resp = await client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0,
                                                max_tokens=24)
    assert "Paris" in (resp.choices[0].message.content or "")
    assert resp.usage is not None and resp.usage.completion_tokens > 0

    stream = await client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0,
                                                  max_tokens=24, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None
    assert text == resp.choices[0].message.content  # greedy: streamed and not give the same answer

    comp = await client.completions.create(model="smollm2-135m", prompt="The capital of France is", max_tokens=4,
                                           temperature=0)
    assert comp.choices[0].text.strip()


async def test_concurrent_streams_through_herder(make_gateway: GatewayFactory, llamacpp_url: str) -> None:
    gw = await make_gateway(worker_urls=[llamacpp_url])
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key="x", max_retries=0)

    async def one() -> str:
        stream = await client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0,
                                                      max_tokens=16, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    answers = await asyncio.gather(*(one() for _ in range(4)))
    assert all("Paris" in a for a in answers)
    worker = next(iter(gw.registry.workers.values()))
    assert worker.load == 0
