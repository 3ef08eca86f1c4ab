"""Completions, SGLang /generate, embeddings, tokenize/detokenize and worker discovery on the gRPC path."""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tokenizers import Tokenizer

from herder.server.app import Gateway
from herder.sim.grpc_worker import SimGrpcWorker, default_tokenizer_dir, sim_output_marker, tokenizer_bundle
from tests.conftest import GatewayFactory
from tests.integration.grpc.conftest import WorkerFactory
from tests.integration.grpc.grpc_helpers import MODEL, base_url, client_for, total_load
from tests.waiting import wait_for, wait_for_async

Env = tuple[Gateway, SimGrpcWorker, openai.AsyncOpenAI]


def _tok() -> Tokenizer:
    return Tokenizer.from_file(str(Path(default_tokenizer_dir()) / "tokenizer.json"))


async def test_completions_batched_prompts_fan_out(grpc_env: Env) -> None:
    gw, worker, client = grpc_env
    prompts = [sim_output_marker("answer A"), sim_output_marker("answer B")]
    before = worker.requests
    resp = await client.completions.create(model=MODEL, prompt=prompts, n=2, max_tokens=50)
    assert worker.requests - before == 2  # one backend request per prompt
    assert [(c.index, c.text) for c in resp.choices] == [
        (0, "answer A"),
        (1, "answer A"),
        (2, "answer B"),
        (3, "answer B"),
    ]
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == sum(len(_tok().encode(p).ids) for p in prompts)

    stream = await client.completions.create(
        model=MODEL, prompt=prompts, max_tokens=50, stream=True, stream_options={"include_usage": True}
    )
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    async for chunk in stream:
        for ch in chunk.choices:
            texts[ch.index] = texts.get(ch.index, "") + ch.text
            finishes[ch.index] = ch.finish_reason or finishes.get(ch.index)
    assert texts == {0: "answer A", 1: "answer B"}
    assert finishes == {0: "stop", 1: "stop"}
    assert total_load(gw) == 0


async def test_completions_token_prompt_echo_and_length(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    ids = _tok().encode("The quick brown fox").ids
    resp = await client.completions.create(model=MODEL, prompt=ids, max_tokens=4, echo=True)
    assert list(worker.received[-1].tokenized.input_ids) == ids
    assert resp.choices[0].text.startswith("The quick brown fox")
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 4


async def test_generate_with_text_and_input_ids(grpc_env: Env) -> None:
    gw, worker, _ = grpc_env
    async with httpx.AsyncClient() as http:
        r = await http.post(
            base_url(gw) + "/generate",
            json={
                "text": sim_output_marker("generated text"),
                "sampling_params": {"max_new_tokens": 40, "temperature": 0},
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["text"] == "generated text"
        assert body["output_ids"][:-1] == _tok().encode("generated text").ids  # + EOS
        assert body["meta_info"]["finish_reason"]["type"] == "stop"
        assert body["meta_info"]["completion_tokens"] == len(body["output_ids"])
        assert worker.received[-1].sampling_params.temperature == 0.0

        ids = _tok().encode("hello world").ids
        r = await http.post(
            base_url(gw) + "/generate",
            json={
                "input_ids": ids,
                "sampling_params": {"max_new_tokens": 3},
                "return_logprob": True,
                "top_logprobs_num": 2,
            },
        )
        body = r.json()
        assert list(worker.received[-1].tokenized.input_ids) == ids
        assert body["meta_info"]["finish_reason"] == {"type": "length", "length": 3}
        assert len(body["meta_info"]["output_token_logprobs"]) == 3
        assert body["meta_info"]["output_token_logprobs"][0][1] == body["output_ids"][0]

        r = await http.post(
            base_url(gw) + "/generate", json={"text": ["a", "b"], "sampling_params": {"max_new_tokens": 2}}
        )
        assert isinstance(r.json(), list) and [o["index"] for o in r.json()] == [0, 1]

        events = []
        async with http.stream(
            "POST",
            base_url(gw) + "/generate",
            json={
                "text": sim_output_marker("streamed words here"),
                "stream": True,
                "sampling_params": {"max_new_tokens": 40},
            },
        ) as s:
            async for line in s.aiter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
        assert events[-1] == "[DONE]"
        import json

        objs = [json.loads(e) for e in events[:-1]]
        assert objs[-1]["text"] == "streamed words here"  # cumulative, as SGLang streams
        assert all(objs[i]["text"] == objs[-1]["text"][: len(objs[i]["text"])] for i in range(len(objs)))
    assert total_load(gw) == 0


async def test_embeddings(grpc_env: Env) -> None:
    _, _, client = grpc_env
    resp = await client.embeddings.create(model=MODEL, input=["one", "two words"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 256 and resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage.prompt_tokens == len(_tok().encode("one").ids) + len(_tok().encode("two words").ids)
    raw = await client.embeddings.with_raw_response.create(model=MODEL, input="one", encoding_format="base64")
    data = raw.http_response.json()["data"][0]["embedding"]
    floats = struct.unpack("<256f", base64.b64decode(data))
    assert floats == pytest.approx(resp.data[0].embedding, rel=1e-6)


async def test_tokenize_and_detokenize(grpc_env: Env) -> None:
    gw, _, _ = grpc_env
    tok = _tok()
    text = "Héllo wörld, 日本語!"
    async with httpx.AsyncClient() as http:
        r = await http.post(base_url(gw) + "/v1/tokenize", json={"model": MODEL, "prompt": text})
        assert r.json() == {
            "tokens": tok.encode(text).ids,
            "count": len(tok.encode(text).ids),
            "char_count": len(text),
            "model": MODEL,
        }
        r = await http.post(base_url(gw) + "/v1/tokenize", json={"model": MODEL, "prompt": ["a b", "c"]})
        assert r.json()["tokens"] == [tok.encode("a b").ids, tok.encode("c").ids]
        assert r.json()["count"] == [2, 1] and r.json()["char_count"] == [3, 1]
        ids = tok.encode(text).ids
        r = await http.post(base_url(gw) + "/v1/detokenize", json={"model": MODEL, "tokens": ids})
        assert r.json() == {"text": text}
        im_end = tok.token_to_id("<|im_end|>")
        r = await http.post(
            base_url(gw) + "/v1/detokenize",
            json={"model": MODEL, "tokens": [ids, [im_end]], "skip_special_tokens": False},
        )
        assert r.json() == {"text": [text, "<|im_end|>"]}
        r = await http.post(base_url(gw) + "/v1/detokenize", json={"model": MODEL, "tokens": [10**9]})
        assert r.status_code == 400
        r = await http.post(base_url(gw) + "/v1/tokenize", json={"model": "other", "prompt": "x"})
        assert r.status_code == 404


async def test_tokenizers_admin_api(grpc_env: Env) -> None:
    gw, _, _ = grpc_env
    async with httpx.AsyncClient() as http:
        url = base_url(gw) + "/v1/tokenizers"
        r = await http.post(url, json={"name": "extra", "source": default_tokenizer_dir()})
        assert r.status_code == 202 and r.json()["status"] == "pending"
        tid = r.json()["id"]
        assert (await http.post(url, json={"name": "extra", "source": "x"})).status_code == 409

        async def load_status() -> dict[str, Any]:
            return dict((await http.get(f"{url}/{tid}/status")).json())

        async def load_finished() -> bool:
            return (await load_status())["status"] in ("completed", "failed")

        await wait_for_async(load_finished, timeout=10, interval=0.05, message="the tokenizer load did not finish")
        status = await load_status()  # completed and failed are final
        assert status["status"] == "completed" and status["vocab_size"] == 151669
        listed = (await http.get(url)).json()["tokenizers"]
        assert {t["name"] for t in listed} == {MODEL, "extra"}
        assert (await http.get(f"{url}/{tid}")).json()["name"] == "extra"
        r = await http.post(base_url(gw) + "/v1/tokenize", json={"model": "extra", "prompt": "hi"})
        assert r.json()["tokens"] == _tok().encode("hi").ids
        assert (await http.delete(f"{url}/{tid}")).json()["success"] is True
        r = await http.get(f"{url}/{tid}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "tokenizer_not_found"
        assert (await http.post(url, json={"name": "bad"})).status_code == 400


async def test_discovery_labels_and_readiness(grpc_env: Env) -> None:
    gw, _worker, _ = grpc_env
    w = next(iter(gw.registry.workers.values()))
    assert w.models == [MODEL] and w.runtime_type == "sglang"
    assert w.labels["max_context_length"] == "8192" and w.labels["served_model_name"] == MODEL
    assert w.labels["tp_size"] == "1"
    async with httpx.AsyncClient() as http:
        assert (await http.get(base_url(gw) + "/readiness")).status_code == 200
        models = (await http.get(base_url(gw) + "/v1/models")).json()["data"]
    assert [m["id"] for m in models] == [MODEL]


async def test_tokenizer_from_getTokenizer_bundle(
    tmp_path: Path, make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    # The worker's tokenizer folder is gone from this host, so the gateway must fetch the bundle.
    folder = tmp_path / "tok"
    shutil.copytree(default_tokenizer_dir(), folder)
    worker = await make_grpc_worker(tokenizer_dir=str(folder))
    tokenizer_bundle(str(folder))  # the worker builds its bundle from this cache
    shutil.rmtree(folder)
    gw = await make_gateway(worker_urls=[worker.url])
    entry = gw.grpc.tokenizers.get(MODEL)  # type: ignore[attr-defined]
    assert entry is not None and entry.source.startswith("grpc-bundle:")
    worker.script("from the bundle")
    resp = await client_for(gw).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert resp.choices[0].message.content == "from the bundle"


async def test_readiness_waits_for_a_tokenizer(
    tmp_path: Path, make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    folder = tmp_path / "tok"
    shutil.copytree(default_tokenizer_dir(), folder)
    worker = await make_grpc_worker(tokenizer_dir=str(folder))
    shutil.rmtree(folder)
    gw = await make_gateway(worker_urls=[worker.url], disable_tokenizer_autoload=True)
    assert gw.registry.any_ready()
    async with httpx.AsyncClient() as http:
        assert (await http.get(base_url(gw) + "/readiness")).status_code == 503
        r = await http.post(
            base_url(gw) + "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 503
        # Registering a tokenizer for the model through the admin API makes the gateway ready.
        r = await http.post(
            base_url(gw) + "/v1/tokenizers", json={"name": MODEL, "source": default_tokenizer_dir()}
        )
        assert r.status_code == 202
        await wait_for(lambda: gw.is_ready())
        assert (await http.get(base_url(gw) + "/readiness")).status_code == 200


async def test_vllm_runtime_and_cache_aware_routing_on_tokens(
    make_gateway: GatewayFactory, make_grpc_worker: WorkerFactory
) -> None:
    workers = [await make_grpc_worker("vllm"), await make_grpc_worker("vllm")]
    gw = await make_gateway(worker_urls=[w.url for w in workers], policy="cache_aware")
    client = client_for(gw)
    prompt = "Describe the history of the printing press in detail. " * 20
    for _ in range(4):
        workers[0].script("ok")
        workers[1].script("ok")
        resp = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=5
        )
        assert resp.choices[0].message.content == "ok"
    # The same token prefix goes to the same worker every time.
    assert sorted(w.requests for w in workers) == [0, 4]
    assert all(w.runtime_type == "vllm" for w in gw.registry.workers.values())
    assert total_load(gw) == 0
