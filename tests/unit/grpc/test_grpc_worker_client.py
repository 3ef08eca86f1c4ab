"""GrpcWorkerClient against the simulated SGLang and vLLM gRPC workers over real sockets (Qwen3 tokenizer)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import zipfile

import grpc
import pytest
from tokenizers import Tokenizer

from herder.routing.grpc import (
    Chunk,
    Complete,
    GenerateEvent,
    GenerateParams,
    GrpcCallError,
    GrpcWorkerClient,
)
from herder.sim.grpc_worker import SimGrpcWorker, sim_output_marker

SCRIPTED = (
    "<think>\nThe user wants the weather in Zürich — let me call the tool.\n</think>\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich", "unit": "°C"}}\n</tool_call>'
    " 天气很好 🌤️"
)
# A guard against a hung stream, not a timing assertion.
GUARD_S = 30.0


def _ids(qwen: Tokenizer, text: str) -> list[int]:
    return list(qwen.encode(text, add_special_tokens=False).ids)


async def _collect(client: GrpcWorkerClient, params: GenerateParams) -> list[GenerateEvent]:
    async def run() -> list[GenerateEvent]:
        return [ev async for ev in client.generate(params)]

    return await asyncio.wait_for(run(), GUARD_S)


def _by_index(events: list[GenerateEvent]) -> tuple[dict[int, list[int]], dict[int, Complete]]:
    streamed: dict[int, list[int]] = {}
    done: dict[int, Complete] = {}
    for ev in events:
        if isinstance(ev, Chunk):
            assert ev.index not in done
            streamed.setdefault(ev.index, []).extend(ev.token_ids)
        else:
            assert ev.index not in done
            done[ev.index] = ev
    return streamed, done


def _without_eos(ids: list[int], eos: int) -> list[int]:
    return ids[:-1] if ids and ids[-1] == eos else ids


async def test_detection_and_model_info(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    assert await client.detect() == worker.runtime
    info = await client.model_info()
    assert info.runtime == worker.runtime
    assert info.model_id == "qwen3-sim" and info.served_model_name == "qwen3-sim"
    assert info.vocab_size == qwen.get_vocab_size(with_added_tokens=True)
    assert qwen.token_to_id("<|im_end|>") in info.eos_token_ids
    assert info.context_length > 0
    assert await client.health() is True


async def test_detection_with_a_wrong_hint_still_finds_the_runtime(worker: SimGrpcWorker) -> None:
    other = "vllm" if worker.runtime == "sglang" else "sglang"
    async with GrpcWorkerClient(worker.url, runtime_hint=other) as c:
        assert await c.detect() == worker.runtime
    async with GrpcWorkerClient(worker.url, runtime_hint=worker.runtime) as c:
        assert await c.detect() == worker.runtime


async def test_tokenizer_bundle_round_trip(client: GrpcWorkerClient, qwen_dir: str, qwen: Tokenizer) -> None:
    data, digest = await client.fetch_tokenizer()
    assert digest == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert {"tokenizer.json", "tokenizer_config.json"} <= names
        raw = zf.read("tokenizer.json")
    with open(os.path.join(qwen_dir, "tokenizer.json"), "rb") as f:
        assert raw == f.read()
    rebuilt = Tokenizer.from_str(raw.decode("utf-8"))
    assert rebuilt.encode(SCRIPTED).ids == qwen.encode(SCRIPTED).ids


@pytest.mark.parametrize("stream", [True, False])
async def test_scripted_output_decodes_exactly(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer, stream: bool
) -> None:
    worker.script(SCRIPTED)
    prompt = _ids(qwen, "<|im_start|>user\nWeather in Zürich?<|im_end|>\n<|im_start|>assistant\n")
    events = await _collect(
        client, GenerateParams("req-script", prompt, stream=stream, skip_special_tokens=False)
    )
    streamed, done = _by_index(events)
    eos = qwen.token_to_id("<|im_end|>")
    assert set(done) == {0}
    final = done[0]
    assert final.finish_reason == "stop"
    assert final.output_ids[-1] == eos
    assert qwen.decode(_without_eos(final.output_ids, eos), skip_special_tokens=False) == SCRIPTED
    assert final.completion_tokens == len(final.output_ids)
    assert final.prompt_tokens == len(prompt)
    if stream:
        assert streamed[0] == final.output_ids  # chunks carry every id exactly once
        assert sum(isinstance(e, Chunk) for e in events) > 1
    else:
        assert streamed == {}
    if worker.runtime == "sglang":
        assert final.matched_stop == eos
    else:
        assert final.matched_stop is None  # vLLM reports no matched_stop for EOS


async def test_prompt_marker_scripts_the_output(client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    text = "Grüße — 你好!"
    prompt = _ids(qwen, "please answer " + sim_output_marker(text))
    events = await _collect(client, GenerateParams("req-marker", prompt))
    _, done = _by_index(events)
    assert qwen.decode(done[0].output_ids) == text  # decode skips the EOS special token


async def test_unscripted_output_is_deterministic_real_tokens(
    client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    prompt = _ids(qwen, "Tell me a story about a fox.")
    a = _by_index(await _collect(client, GenerateParams("det-1", prompt)))[1][0]
    b = _by_index(await _collect(client, GenerateParams("det-2", prompt)))[1][0]
    other = _by_index(await _collect(client, GenerateParams("det-3", _ids(qwen, "Something else."))))[1][0]
    assert a.output_ids == b.output_ids
    assert a.output_ids != other.output_ids
    text = qwen.decode(a.output_ids)
    assert text.strip() and _ids(qwen, text) == _without_eos(a.output_ids, qwen.token_to_id("<|im_end|>"))


async def test_n2_multiplexed(worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    texts = ["first answer", "second, different answer"]
    worker.script(texts)
    events = await _collect(client, GenerateParams("req-n2", _ids(qwen, "hi"), n=2))
    streamed, done = _by_index(events)
    assert set(done) == {0, 1}
    for i, text in enumerate(texts):
        assert streamed[i] == done[i].output_ids
        assert qwen.decode(done[i].output_ids) == text


async def test_stop_token_ids(worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    text = "alpha beta gamma delta epsilon"
    ids = _ids(qwen, text)
    stop_id = ids[2]
    worker.script(text)
    events = await _collect(client, GenerateParams("req-stopid", _ids(qwen, "go"), stop_token_ids=[stop_id]))
    streamed, done = _by_index(events)
    assert done[0].finish_reason == "stop"
    assert done[0].matched_stop == stop_id
    assert done[0].output_ids == ids[:3] == streamed[0]


async def test_stop_string_spanning_tokens(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    text = "The answer is 42. END_OF_ANSWER and more text that must not appear"
    stop = "42. END"
    ids = _ids(qwen, text)
    pieces = [qwen.decode([t]) for t in ids]
    assert not any(stop in p for p in pieces)  # the stop string really spans token boundaries
    worker.script(text)
    events = await _collect(client, GenerateParams("req-stopstr", _ids(qwen, "go"), stop=[stop]))
    _, done = _by_index(events)
    out = done[0]
    assert out.finish_reason == "stop" and out.matched_stop == stop
    decoded = qwen.decode(out.output_ids)
    assert stop in decoded and stop not in qwen.decode(out.output_ids[:-1])
    assert out.output_ids == ids[: len(out.output_ids)]


async def test_max_new_tokens_and_ignore_eos(
    client: GrpcWorkerClient, worker: SimGrpcWorker, qwen: Tokenizer
) -> None:
    worker.script("short")
    events = await _collect(
        client, GenerateParams("req-len", _ids(qwen, "go"), max_new_tokens=25, ignore_eos=True)
    )
    _, done = _by_index(events)
    assert done[0].finish_reason == "length"
    assert len(done[0].output_ids) == 25 == done[0].completion_tokens
    assert qwen.token_to_id("<|im_end|>") not in done[0].output_ids
    assert qwen.decode(done[0].output_ids).startswith("short")


async def test_logprobs_when_requested(client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    params = GenerateParams("req-lp", _ids(qwen, "hello"), max_new_tokens=6, logprobs=True, top_logprobs=3)
    events = await _collect(client, params)
    _, done = _by_index(events)
    lp = done[0].logprobs
    assert lp is not None
    assert lp.token_ids == done[0].output_ids
    assert all(v < 0 for v in lp.logprobs)
    assert all(len(top) == 3 and top[0][0] == tok for top, tok in zip(lp.top, lp.token_ids, strict=True))
    chunk_lp = [t for e in events if isinstance(e, Chunk) and e.logprobs for t in e.logprobs.token_ids]
    assert chunk_lp == done[0].output_ids
    plain = _by_index(
        await _collect(client, GenerateParams("req-nolp", _ids(qwen, "hello"), max_new_tokens=6))
    )[1]
    assert plain[0].logprobs is None


async def test_consumer_cancel_sends_abort(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    params = GenerateParams(
        "req-cancel", _ids(qwen, "never ending"), max_new_tokens=1_000_000, ignore_eos=True
    )
    gen = client.generate(params)
    first = await asyncio.wait_for(gen.__anext__(), GUARD_S)
    assert isinstance(first, Chunk)
    await gen.aclose()
    await asyncio.wait_for(worker.wait_until(lambda: "req-cancel" in worker.aborted_ids), GUARD_S)
    await asyncio.wait_for(worker.wait_until(lambda: worker.running == 0), GUARD_S)
    assert worker.engine.stats.running == 0


async def test_task_cancellation_sends_abort(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    params = GenerateParams("req-task", _ids(qwen, "never ending"), max_new_tokens=1_000_000, ignore_eos=True)
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in client.generate(params):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), GUARD_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(worker.wait_until(lambda: "req-task" in worker.aborted_ids), GUARD_S)
    await asyncio.wait_for(worker.wait_until(lambda: worker.running == 0), GUARD_S)


async def test_abort_rpc_ends_running_generation(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    params = GenerateParams("req-abort", _ids(qwen, "long"), max_new_tokens=1_000_000, ignore_eos=True)
    events: list[GenerateEvent] = []

    async def consume() -> None:
        async for ev in client.generate(params):
            events.append(ev)
            if len(events) == 1:
                await client.abort(["req-abort"])

    await asyncio.wait_for(consume(), GUARD_S)
    last = events[-1]
    assert isinstance(last, Complete) and last.finish_reason == "abort"
    assert len(last.output_ids) < 1_000_000
    assert worker.aborted_ids.count("req-abort") == 1
    assert worker.running == 0


async def test_completed_stream_sends_no_abort(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    events = await _collect(client, GenerateParams("req-done", _ids(qwen, "hi"), max_new_tokens=3))
    assert isinstance(events[-1], Complete)
    await client.close()
    assert "req-done" not in worker.aborted_ids


async def test_prefix_cache_reports_cached_tokens(client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    prompt = _ids(qwen, " ".join(f"word{i}" for i in range(60)))
    first = _by_index(await _collect(client, GenerateParams("pc-1", prompt, max_new_tokens=2)))[1][0]
    second = _by_index(await _collect(client, GenerateParams("pc-2", prompt, max_new_tokens=2)))[1][0]
    assert first.cached_tokens == 0
    assert 0 < second.cached_tokens <= len(prompt)
    assert await client.flush_cache() is True
    third = _by_index(await _collect(client, GenerateParams("pc-3", prompt, max_new_tokens=2)))[1][0]
    assert third.cached_tokens == 0


async def test_worker_sees_explicit_sampling_defaults(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    await _collect(client, GenerateParams("req-defaults", _ids(qwen, "hi"), max_new_tokens=1))
    sp = worker.received[-1].sampling_params  # type: ignore[attr-defined]
    assert sp.temperature == pytest.approx(1.0) and sp.top_p == pytest.approx(1.0)
    assert sp.repetition_penalty == pytest.approx(1.0)
    assert sp.top_k == (-1 if worker.runtime == "sglang" else 0)


async def test_embed_loads_server_info(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    ids = _ids(qwen, "embed me")
    a = await client.embed("e1", ids)
    b = await client.embed("e2", ids)
    assert a.embedding == b.embedding and a.dim == len(a.embedding) > 0 and a.prompt_tokens == len(ids)
    loads = await client.loads()
    assert loads["loads"][0]["num_running_reqs"] == 0
    info = await client.server_info()
    assert info["server_type"] == ("grpc" if worker.runtime == "sglang" else "vllm-grpc")


@pytest.mark.parametrize(
    ("code", "http"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.INTERNAL, 500),
    ],
)
async def test_generate_errors_map_to_http(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer, code: grpc.StatusCode, http: int
) -> None:
    worker.fail_next(code, "injected")
    with pytest.raises(GrpcCallError) as info:
        await _collect(client, GenerateParams("req-err", _ids(qwen, "hi")))
    assert info.value.grpc_code == code.name
    assert info.value.http_status == http
    assert "injected" in info.value.message
    assert "req-err" not in worker.aborted_ids


async def test_invalid_input_is_400(client: GrpcWorkerClient) -> None:
    with pytest.raises(GrpcCallError) as info:
        await _collect(client, GenerateParams("req-empty", []))
    assert info.value.http_status == 400 and info.value.grpc_code == "INVALID_ARGUMENT"


async def test_deadline_is_504(client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    params = GenerateParams("req-deadline", _ids(qwen, "x"), max_new_tokens=1_000_000, ignore_eos=True)

    async def run() -> None:
        async for _ in client.generate(params, timeout=0.2):
            pass

    with pytest.raises(GrpcCallError) as info:
        await asyncio.wait_for(run(), GUARD_S)
    assert info.value.http_status == 504 and info.value.grpc_code == "DEADLINE_EXCEEDED"


async def test_metadata_reaches_the_worker(client: GrpcWorkerClient, qwen: Tokenizer) -> None:
    params = GenerateParams("req-meta", _ids(qwen, "hi"))
    events: list[GenerateEvent] = []

    async def run() -> None:
        async for ev in client.generate(params, metadata=[("x-sim-output", "from metadata")]):
            events.append(ev)

    await asyncio.wait_for(run(), GUARD_S)
    _, done = _by_index(events)
    assert qwen.decode(done[0].output_ids) == "from metadata"


async def test_injected_engine_fault_maps_back_to_http(
    worker: SimGrpcWorker, client: GrpcWorkerClient, qwen: Tokenizer
) -> None:
    worker.engine.update(error_rate=1.0, error_status=429)
    with pytest.raises(GrpcCallError) as info:
        await _collect(client, GenerateParams("req-fault", _ids(qwen, "hi")))
    assert info.value.http_status == 429 and info.value.grpc_code == "RESOURCE_EXHAUSTED"


async def test_unreachable_worker() -> None:
    async with GrpcWorkerClient("grpc://127.0.0.1:1", detect_timeout=2.0) as c:
        assert await c.health(timeout=2.0) is False
        with pytest.raises(GrpcCallError) as info:
            await c.detect()
        assert info.value.http_status in (503, 504)


def test_status_table_and_hints() -> None:
    from herder.routing.grpc import http_status_for
    from herder.routing.grpc.client import normalize_runtime_hint

    expected = {
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        grpc.StatusCode.CANCELLED: 499,
    }
    for code in grpc.StatusCode:
        assert http_status_for(code) == expected.get(code, 500)
    assert normalize_runtime_hint("TRT-LLM") == "trtllm"
    assert normalize_runtime_hint("openai") is None and normalize_runtime_hint(None) is None


async def test_vllm_prefill_leg_returns_kv_transfer_params(qwen_dir: str, qwen: Tokenizer) -> None:
    from herder.sim.grpc_worker import start_grpc_worker

    w = await start_grpc_worker("vllm", qwen_dir, kv_connector="NixlConnector")
    try:
        async with GrpcWorkerClient(w.url, runtime_hint="vllm") as c:
            info = await c.server_info()
            assert info["kv_connector"] == "NixlConnector" and info["kv_engine_id"]
            params = GenerateParams(
                "pd-1",
                _ids(qwen, "a prompt long enough to fill a couple of blocks " * 3),
                max_new_tokens=1,
                stream=False,
                kv_transfer_params={"do_remote_decode": True, "do_remote_prefill": False},
            )
            _, done = _by_index(await _collect(c, params))
            kv = done[0].kv_transfer_params
            assert kv is not None and kv["do_remote_prefill"] is True
            assert kv["remote_engine_id"] == info["kv_engine_id"] and kv["remote_request_id"] == "pd-1"
            plain = _by_index(await _collect(c, GenerateParams("pd-2", _ids(qwen, "x"), max_new_tokens=1)))[1]
            assert plain[0].kv_transfer_params is None
    finally:
        await w.stop(0)


async def test_tokenizer_sha_mismatch_is_rejected(
    client: GrpcWorkerClient, qwen_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import herder.sim.grpc_worker as sim

    data, digest = sim.tokenizer_bundle(qwen_dir)
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert wrong != digest
    monkeypatch.setattr(sim, "tokenizer_bundle", lambda _d: (data, wrong))
    with pytest.raises(GrpcCallError) as info:
        await client.fetch_tokenizer()
    assert info.value.grpc_code == "DATA_LOSS"
