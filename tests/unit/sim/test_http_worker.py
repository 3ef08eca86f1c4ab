"""The simulated HTTP worker over real sockets, with the official openai SDK and a raw HTTP client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2 as httpx
import openai
import pytest
from openai import AsyncOpenAI

from herder.sim.http_worker import SimHttpWorker
from tests.waiting import wait_for

LONG = " ".join(f"w{i}" for i in range(40))  # 40 pieces -> 2 full cache blocks of 16


@pytest.fixture
async def worker() -> AsyncIterator[SimHttpWorker]:
    w = SimHttpWorker(output_tokens=6, model="sim-model")
    await w.start()
    yield w
    await w.stop()


def sdk(w: SimHttpWorker) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=w.url + "/v1", api_key="x", max_retries=0)


async def sse_events(client: httpx.AsyncClient, url: str, body: dict, headers: dict | None = None) -> list:
    out: list[str] = []
    async with client.stream("POST", url, json=body, headers=headers or {}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                out.append(line[6:])
    return out


async def test_chat_non_streaming(worker: SimHttpWorker) -> None:
    r = await sdk(worker).chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hello there"}], max_tokens=4
    )
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "m1"
    c = r.choices[0]
    assert c.finish_reason == "length" and c.message.role == "assistant"
    assert len(c.message.content.split()) == 4
    assert r.usage.completion_tokens == 4 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 4
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    # no max_tokens: output_tokens words and a natural stop
    r2 = await sdk(worker).chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert r2.choices[0].finish_reason == "stop" and r2.usage.completion_tokens == 6


async def test_chat_streaming_usage_and_done(worker: SimHttpWorker) -> None:
    msgs = [{"role": "user", "content": "tell me"}]
    stream = await sdk(worker).chat.completions.create(
        model="m", messages=msgs, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(content) == 5  # one chunk per token
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    full = await sdk(worker).chat.completions.create(model="m", messages=msgs, max_tokens=5)
    assert "".join(content) == full.choices[0].message.content  # streaming and not streaming agree
    async with httpx.AsyncClient() as h:
        raw = await sse_events(
            h, worker.url + "/v1/chat/completions", {"messages": msgs, "stream": True, "max_tokens": 2}
        )
    assert raw[-1] == "[DONE]" and all("usage" not in json.loads(e) for e in raw[:-1])


async def test_chat_n_and_stop(worker: SimHttpWorker) -> None:
    r = await sdk(worker).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], n=3, max_tokens=4
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1
    assert r.usage.completion_tokens == 12
    r2 = await sdk(worker).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"sim_output": "The capital is Paris. Done."},
        stop=[". D"],
    )
    c = r2.choices[0]
    assert c.message.content == "The capital is Paris" and c.finish_reason == "stop"


async def test_scripted_output_header_and_logprobs(worker: SimHttpWorker) -> None:
    r = await sdk(worker).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-sim-output": "exactly this"},
        logprobs=True,
        top_logprobs=2,
    )
    c = r.choices[0]
    assert c.message.content == "exactly this" and c.finish_reason == "stop"
    assert [t.token for t in c.logprobs.content] == ["exactly", " this"]
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in c.logprobs.content)


async def test_completions(worker: SimHttpWorker) -> None:
    c = sdk(worker)
    r = await c.completions.create(model="m", prompt="once upon", max_tokens=3, logprobs=1)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert len(r.choices[0].logprobs.tokens) == 3 and r.usage.prompt_tokens == 2
    r2 = await c.completions.create(model="m", prompt=["a b", "c d e"], max_tokens=2, echo=True)
    assert [ch.text.split()[:2] for ch in r2.choices] == [["a", "b"], ["c", "d"]]
    assert r2.usage.prompt_tokens == 5
    stream = await c.completions.create(model="m", prompt="once upon", max_tokens=3, stream=True)
    text = "".join([ch.choices[0].text async for ch in stream if ch.choices])
    assert text == r.choices[0].text


async def test_deterministic_output_across_workers(worker: SimHttpWorker) -> None:
    other = SimHttpWorker(output_tokens=6)
    await other.start()
    try:
        msgs = [{"role": "user", "content": "same prompt"}]
        a = await sdk(worker).chat.completions.create(model="m", messages=msgs, max_tokens=8)
        b = await sdk(other).chat.completions.create(model="m", messages=msgs, max_tokens=8)
        c = await sdk(worker).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "other prompt"}], max_tokens=8
        )
        assert a.choices[0].message.content == b.choices[0].message.content
        assert a.choices[0].message.content != c.choices[0].message.content
    finally:
        await other.stop()


async def test_embeddings(worker: SimHttpWorker) -> None:
    c = sdk(worker)
    # the SDK asks for base64 by default and decodes it
    r = await c.embeddings.create(model="e", input=["alpha", "beta", "alpha"], dimensions=16)
    vecs = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2] and all(len(v) == 16 for v in vecs)
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vecs)
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    r2 = await c.embeddings.create(model="e", input="alpha", dimensions=16, encoding_format="float")
    assert all(abs(x - y) < 1e-6 for x, y in zip(r2.data[0].embedding, vecs[0], strict=True))
    assert r2.usage.prompt_tokens == 1


async def test_prefix_cache_and_flush(worker: SimHttpWorker) -> None:
    c = sdk(worker)

    async def cached(prompt: str) -> int:
        r = await c.completions.create(model="m", prompt=prompt, max_tokens=1)
        return r.usage.prompt_tokens_details.cached_tokens

    assert await cached(LONG) == 0
    assert await cached(LONG) == 32
    assert await cached(LONG + " more words here") == 32  # shared prefix
    assert await cached("different start " + LONG) == 0  # not a prefix
    async with httpx.AsyncClient() as h:
        r = await h.post(worker.url + "/flush_cache")
        assert r.status_code == 200
        stats = (await h.get(worker.url + "/sim/stats")).json()
    assert stats["cache_flushes"] == 1 and stats["cache_blocks_used"] == 0
    assert stats["cached_tokens"] == 64
    assert await cached(LONG) == 0


async def test_generate_native(worker: SimHttpWorker) -> None:
    async with httpx.AsyncClient() as h:
        url = worker.url + "/generate"
        r = (await h.post(url, json={"text": LONG, "sampling_params": {"max_new_tokens": 4}})).json()
        assert len(r["output_ids"]) == 4
        assert r["meta_info"]["finish_reason"] == {"type": "length", "length": 4}
        assert r["meta_info"]["prompt_tokens"] == 40 and r["meta_info"]["completion_tokens"] == 4
        r = (await h.post(url, json={"text": LONG, "sampling_params": {"max_new_tokens": 4}})).json()
        assert r["meta_info"]["cached_tokens"] == 32
        two = {"input_ids": [[1, 2, 3], [4, 5]], "sampling_params": {"max_new_tokens": 2}}
        batch = (await h.post(url, json=two)).json()
        assert isinstance(batch, list) and [b["meta_info"]["prompt_tokens"] for b in batch] == [3, 2]
        with_lp = {"input_ids": [7, 8, 9], "return_logprob": True, "sampling_params": {"max_new_tokens": 2}}
        lp = (await h.post(url, json=with_lp)).json()["meta_info"]
        inp, outp = lp["input_token_logprobs"], lp["output_token_logprobs"]
        assert [t[1] for t in inp] == [7, 8, 9] and inp[0][0] is None
        assert len(outp) == 2 and all(t[2] is None and t[0] <= 0 for t in outp)
        streamed = {"text": "a b", "stream": True, "sampling_params": {"max_new_tokens": 3}}
        events = await sse_events(h, url, streamed)
    assert events[-1] == "[DONE]"
    texts = [json.loads(e)["text"] for e in events[:-1]]
    assert len(texts) == 3 and all(texts[i + 1].startswith(texts[i]) for i in range(2))  # cumulative
    assert json.loads(events[-2])["meta_info"]["finish_reason"]["type"] == "length"


async def test_other_endpoints(worker: SimHttpWorker) -> None:
    async with httpx.AsyncClient() as h:
        u = worker.url
        models = (await h.get(u + "/v1/models")).json()
        assert models["data"][0]["id"] == "sim-model" and models["data"][0]["owned_by"] == "sglang"
        assert (await h.get(u + "/health")).status_code == 200
        assert (await h.get(u + "/health_generate")).status_code == 200
        loads = (await h.get(u + "/v1/loads")).json()
        assert loads["loads"][0]["num_running_reqs"] == 0
        assert (await h.get(u + "/get_load")).json()[0]["dp_rank"] == 0
        assert (await h.get(u + "/get_model_info")).json()["model_path"] == "sim-model"
        assert (await h.get(u + "/get_server_info")).json()["served_model_name"] == "sim-model"
        rr = (
            await h.post(u + "/v1/rerank", json={"query": "red fox", "documents": ["blue", "red fox", "red"]})
        ).json()
        assert [x["index"] for x in rr["results"]] == [1, 2, 0]
        assert rr["results"][0]["document"]["text"] == "red fox"
        cl = (await h.post(u + "/v1/classify", json={"input": ["a", "b"]})).json()
        assert len(cl["data"]) == 2 and cl["data"][0]["label"] in ("negative", "positive")
        bad = await h.post(u + "/v1/chat/completions", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        bad2 = await h.post(u + "/v1/chat/completions", json={"messages": "nope"})
        assert bad2.status_code == 400 and "message" in bad2.json()["error"]
        assert (await h.get(u + "/nope")).status_code == 404
        assert (await h.get(u + "/v1/chat/completions")).status_code == 405
        assert (await h.post(u + "/sim/config", json={"error_rate": "high"})).status_code == 400
        assert (await h.head(u + "/health")).status_code == 405
        cfg = await h.post(u + "/sim/config", json={"healthy": False})
        assert cfg.status_code == 200 and (await h.get(u + "/health")).status_code == 503
        stats = (await h.get(u + "/sim/stats")).json()
    assert stats["requests_by_path"]["/health"] == 3 and stats["open_connections"] >= 1
    assert stats["requests_by_path"]["(other)"] == 1  # /nope


async def test_error_injection(worker: SimHttpWorker) -> None:
    c = sdk(worker)
    with pytest.raises(openai.RateLimitError) as ei:
        await c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-status": "429"}
        )
    assert ei.value.status_code == 429
    worker.engine.update(error_rate=1.0, error_status=503, retry_after_s=2)
    async with httpx.AsyncClient() as h:
        r = await h.post(worker.url + "/generate", json={"text": "x"})
    assert r.status_code == 503 and r.headers["retry-after"] == "2" and "error" in r.json()
    assert worker.engine.stats.errors_injected == 2 and worker.engine.stats.running == 0


async def test_stall_then_disconnect_is_aborted(worker: SimHttpWorker) -> None:
    eng = worker.engine
    got: list[str] = []
    async with (
        httpx.AsyncClient() as h,
        h.stream(
            "POST",
            worker.url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 10},
            headers={"x-sim-stall-after": "2"},
        ) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                got.append(line)
            if len(got) == 3:  # role chunk + 2 tokens, then nothing more arrives
                break
        await wait_for(lambda: eng.stats.stalled == 1, interval=0.01)
        assert eng.stats.running == 1 and eng.stats.open_connections >= 1
    # the client closed the connection: the stalled request is aborted and its slot released
    await wait_for(lambda: eng.stats.aborted == 1 and eng.stats.running == 0, interval=0.01)


async def test_stall_non_streamed_never_answers(worker: SimHttpWorker) -> None:
    eng = worker.engine
    async with httpx.AsyncClient(timeout=0.3) as h:
        with pytest.raises(httpx.ReadTimeout):
            await h.post(
                worker.url + "/v1/completions", json={"prompt": "x"}, headers={"x-sim-stall-after": "1"}
            )
    assert eng.stats.stalled == 1
    await wait_for(lambda: eng.stats.aborted == 1 and eng.stats.running == 0, interval=0.01)


async def test_streaming_n_choices(worker: SimHttpWorker) -> None:
    msgs = [{"role": "user", "content": "two"}]
    stream = await sdk(worker).chat.completions.create(
        model="m", messages=msgs, n=2, max_tokens=3, stream=True
    )
    texts = ["", ""]
    async for ch in stream:
        for c in ch.choices:
            texts[c.index] += c.delta.content or ""
    full = await sdk(worker).chat.completions.create(model="m", messages=msgs, n=2, max_tokens=3)
    assert texts == [c.message.content for c in full.choices]


async def test_client_disconnect_mid_stream_stops_generation(worker: SimHttpWorker) -> None:
    eng = worker.engine
    async with (
        httpx.AsyncClient() as h,
        h.stream(
            "POST",
            worker.url + "/generate",
            json={"text": "x", "stream": True, "sampling_params": {"max_new_tokens": 1000}},
            headers={"x-sim-itl-ms": "60000"},  # a minute per token: only an abort ends this soon
        ) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break
        assert eng.stats.running == 1
    await wait_for(lambda: eng.stats.aborted == 1 and eng.stats.running == 0, interval=0.01)
    assert eng.stats.completion_tokens == 1 and eng.stats.completed == 0


async def test_disconnect_during_prefill_of_non_streamed_request(worker: SimHttpWorker) -> None:
    eng = worker.engine
    async with httpx.AsyncClient() as h:
        task = asyncio.create_task(
            h.post(worker.url + "/v1/completions", json={"prompt": "x"}, headers={"x-sim-ttft-ms": "60000"})
        )
        await wait_for(lambda: eng.stats.running == 1, interval=0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_for(lambda: eng.stats.aborted == 1 and eng.stats.running == 0, interval=0.01)


async def test_die_after_in_process_closes_listener() -> None:
    w = SimHttpWorker(die_after=1)
    await w.start()
    try:
        async with httpx.AsyncClient() as h:
            ok = await h.post(w.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1})
            assert ok.status_code == 200
            with pytest.raises(httpx.TransportError):
                await h.post(w.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1})
        await asyncio.wait_for(w.dead.wait(), 5)
        async with httpx.AsyncClient() as h2:
            with pytest.raises(httpx.ConnectError):
                await h2.get(w.url + "/health")
    finally:
        await w.stop()
