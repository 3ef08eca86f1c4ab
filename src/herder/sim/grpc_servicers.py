"""The smg-grpc-proto servicers of the simulated gRPC worker (``grpc_worker.py``): ``SglangServicer``
(``SglangScheduler``) and ``VllmServicer`` (``VllmEngine``) over the runtime-neutral ``SimCore``, and the
request/choice types (``GenSpec``, ``_Choice``) they exchange with it.

``grpc_worker`` imports (and re-exports) these names; this module imports ``SimCore`` for type checking only,
so there is no import cycle at run time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from smg_grpc_proto.generated import (
    common_pb2,
    sglang_scheduler_pb2,
    sglang_scheduler_pb2_grpc,
    vllm_engine_pb2,
    vllm_engine_pb2_grpc,
)

from herder.sim.text import stable_hash_ids

if TYPE_CHECKING:
    from herder.sim.grpc_worker import SimCore

BUNDLE_CHUNK_BYTES = 512 * 1024


@dataclass(slots=True)
class GenSpec:
    """A Generate request, runtime-neutral, as the simulator needs it."""

    request_id: str
    input_ids: list[int]
    original_text: str
    max_new_tokens: int | None
    min_new_tokens: int
    stop: list[str]
    stop_token_ids: list[int]
    ignore_eos: bool
    skip_special_tokens: bool
    n: int
    stream: bool
    logprobs: bool
    top_logprobs: int


@dataclass(slots=True)
class _Choice:
    """Generation state of one choice index."""

    index: int
    source: Iterator[int]
    ids: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    finish_reason: str = ""
    matched: int | str | None = None


# -------------------------------------------------------------------------------------------- servicers


class _CommonServicer:
    """RPCs whose messages have the same field names in the SGLang and vLLM protos; ``Generate`` is shared
    too, with the runtime's request parsing and response wrapping as hooks."""

    pb2: Any

    def __init__(self, core: SimCore) -> None:
        self.core = core

    def _spec(self, request: Any) -> GenSpec:
        raise NotImplementedError

    def _wrap(self, spec: GenSpec, **one: Any) -> Any:
        raise NotImplementedError

    def _complete_ids(self, spec: GenSpec, ch: _Choice, last_delta: list[int]) -> list[int]:
        return ch.ids

    def _decorate_complete(self, request: Any, spec: GenSpec, done: Any) -> None:
        """Runtime-specific extras on a GenerateComplete (vLLM: PD kv_transfer_params)."""

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        core, pb2 = self.core, self.pb2
        core.received.append(request)
        spec = self._spec(request)
        last_delta: dict[int, list[int]] = {}
        async with aclosing(core.generate(spec, context)) as events:
            async for kind, ch, prompt, completion, cached in events:
                counts = {"prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached}
                if kind == "chunk":
                    last_delta[ch.index] = list(ch.new)
                    chunk = pb2.GenerateStreamChunk(token_ids=ch.new, index=ch.index, **counts)
                    if spec.logprobs:
                        lp = core.logprobs_for(spec, ch.new, len(ch.ids) - len(ch.new))
                        chunk.output_logprobs.CopyFrom(_output_lp(pb2, lp))
                    yield self._wrap(spec, chunk=chunk)
                    continue
                ids = self._complete_ids(spec, ch, last_delta.get(ch.index, []))
                done = pb2.GenerateComplete(
                    output_ids=ids, finish_reason=ch.finish_reason, index=ch.index, **counts
                )
                if isinstance(ch.matched, int):
                    done.matched_token_id = ch.matched
                elif isinstance(ch.matched, str):
                    done.matched_stop_str = ch.matched
                if spec.logprobs:
                    lp = core.logprobs_for(spec, ids, len(ch.ids) - len(ids))
                    done.output_logprobs.CopyFrom(_output_lp(pb2, lp))
                self._decorate_complete(request, spec, done)
                yield self._wrap(spec, complete=done)

    async def Embed(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ids = list(request.tokenized.input_ids)
        if not ids:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input_ids must not be empty")
        emb = self.core.engine.embed(stable_hash_ids(ids))
        return self.pb2.EmbedResponse(embedding_dim=len(emb), embedding=emb, prompt_tokens=len(ids))

    async def HealthCheck(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ok = self.core.engine.config.healthy
        return self.pb2.HealthCheckResponse(healthy=ok, message="ok" if ok else "unhealthy")

    async def GetModelInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        c, t = self.core, self.core.tokenizer
        return self.pb2.GetModelInfoResponse(
            model_path=c.model_path,
            tokenizer_path=t.dir,
            is_generation=True,
            served_model_name=c.served_model_name,
            max_context_length=c.context_length,
            vocab_size=t.vocab_size,
            model_type="sim",
            eos_token_ids=t.eos_token_ids,
            pad_token_id=t.pad_token_id,
            bos_token_id=t.bos_token_id,
            max_req_input_len=c.context_length - 1,
            architectures=["SimForCausalLM"],
        )

    def _load(self) -> Any:
        names = {f.name for f in self.pb2.SchedulerLoad.DESCRIPTOR.fields}
        return self.pb2.SchedulerLoad(**{k: v for k, v in self.core.engine.loads().items() if k in names})

    def _loads_response(self, **extra: Any) -> Any:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self.pb2.GetLoadsResponse(timestamp=now, version="sim", dp_rank_count=1, **extra)

    async def GetLoads(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._loads_response(loads=[self._load()])

    async def FlushCache(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.core.engine.flush_cache()
        return common_pb2.FlushCacheResponse(success=True, message="flushed")

    async def GetTokenizer(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        data, digest = await asyncio.to_thread(self.core.tokenizer_bundle)
        for start in range(0, len(data), BUNDLE_CHUNK_BYTES):
            last = start + BUNDLE_CHUNK_BYTES >= len(data)
            piece = data[start : start + BUNDLE_CHUNK_BYTES]
            yield common_pb2.GetTokenizerChunk(data=piece, sha256=digest if last else "")


class SglangServicer(_CommonServicer, sglang_scheduler_pb2_grpc.SglangSchedulerServicer):
    """``sglang.grpc.scheduler.SglangScheduler`` over a SimCore (complete messages carry all output ids)."""

    pb2 = sglang_scheduler_pb2

    def _spec(self, request: Any) -> GenSpec:
        sp = request.sampling_params
        return GenSpec(
            request_id=request.request_id,
            input_ids=list(request.tokenized.input_ids),
            original_text=request.tokenized.original_text,
            max_new_tokens=sp.max_new_tokens if sp.HasField("max_new_tokens") else None,
            min_new_tokens=sp.min_new_tokens,
            stop=list(sp.stop),
            stop_token_ids=list(sp.stop_token_ids),
            ignore_eos=sp.ignore_eos,
            skip_special_tokens=sp.skip_special_tokens,
            n=sp.n or 1,
            stream=request.stream,
            logprobs=request.return_logprob,
            top_logprobs=request.top_logprobs_num,
        )

    def _wrap(self, spec: GenSpec, **one: Any) -> Any:
        return self.pb2.GenerateResponse(request_id=spec.request_id, **one)

    async def Abort(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.core.abort([request.request_id])
        return self.pb2.AbortResponse(success=True)

    async def GetServerInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        c = self.core
        cfg = c.engine.config
        max_tokens = cfg.cache_blocks * cfg.block_size
        resp = self.pb2.GetServerInfoResponse(
            active_requests=len(c.running),
            uptime_seconds=time.time() - c.started,
            sglang_version="sim",
            server_type="grpc",
            max_total_num_tokens=max_tokens,
        )
        resp.server_args.update(
            {
                "model_path": c.model_path,
                "served_model_name": c.served_model_name,
                "tokenizer_path": c.tokenizer.dir,
                "context_length": c.context_length,
                "tp_size": 1,
                "dp_size": 1,
                "page_size": cfg.block_size,
            }
        )
        resp.scheduler_info.update(
            {"max_total_num_tokens": max_tokens, "max_running_requests": cfg.max_running_requests}
        )
        resp.start_time.FromSeconds(int(c.started))
        return resp

    async def GetLoads(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        load = self._load()
        agg = self.pb2.AggregateMetrics(
            total_running_reqs=load.num_running_reqs,
            total_waiting_reqs=load.num_waiting_reqs,
            total_reqs=load.num_total_reqs,
            avg_token_usage=load.token_usage,
            avg_throughput=load.gen_throughput,
            avg_utilization=load.utilization,
        )
        return self._loads_response(loads=[load], aggregate=agg)


class VllmServicer(_CommonServicer, vllm_engine_pb2_grpc.VllmEngineServicer):
    """``vllm.grpc.engine.VllmEngine`` over a SimCore (chunks carry new ids; a streaming complete repeats the
    last delta, a non-streaming complete carries all ids, as the real vLLM servicer does)."""

    pb2 = vllm_engine_pb2

    def _spec(self, request: Any) -> GenSpec:
        sp = request.sampling_params
        if request.WhichOneof("input") == "text":
            ids, text = self.core.tokenizer.encode(request.text), request.text
        else:
            ids, text = list(request.tokenized.input_ids), request.tokenized.original_text
        return GenSpec(
            request_id=request.request_id,
            input_ids=ids,
            original_text=text,
            max_new_tokens=sp.max_tokens if sp.HasField("max_tokens") else None,
            min_new_tokens=sp.min_tokens,
            stop=list(sp.stop),
            stop_token_ids=list(sp.stop_token_ids),
            ignore_eos=sp.ignore_eos,
            skip_special_tokens=sp.skip_special_tokens,
            n=sp.n or 1,
            stream=request.stream,
            logprobs=sp.HasField("logprobs"),
            top_logprobs=max(sp.logprobs, 0) if sp.HasField("logprobs") else 0,
        )

    def _wrap(self, spec: GenSpec, **one: Any) -> Any:
        return self.pb2.GenerateResponse(**one)

    def _complete_ids(self, spec: GenSpec, ch: _Choice, last_delta: list[int]) -> list[int]:
        return last_delta if spec.stream else ch.ids

    def _decorate_complete(self, request: Any, spec: GenSpec, done: Any) -> None:
        # A prefill leg (do_remote_decode) hands the decode leg its KV location, NIXL-style.
        if not request.HasField("kv_transfer_params_json"):
            return
        try:
            params = json.loads(request.kv_transfer_params_json)
        except ValueError:
            return
        if isinstance(params, dict) and params.get("do_remote_decode"):
            block = self.core.engine.config.block_size
            handoff = {
                "do_remote_prefill": True,
                "do_remote_decode": False,
                "remote_engine_id": self.core.kv_engine_id,
                "remote_request_id": spec.request_id,
                "remote_block_ids": list(range((len(spec.input_ids) + block - 1) // block)),
                "tp_size": 1,
            }
            done.kv_transfer_params_json = json.dumps(handoff, separators=(",", ":"))

    async def Abort(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.core.abort(list(request.request_ids))
        return self.pb2.AbortResponse()

    async def GetServerInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        c = self.core
        return self.pb2.GetServerInfoResponse(
            active_requests=len(c.running),
            uptime_seconds=time.time() - c.started,
            server_type="vllm-grpc",
            data_parallel_size=1,
            block_size=c.engine.config.block_size,
            max_num_seqs=c.engine.config.max_running_requests,
            kv_cache_dtype="auto",
            kv_connector=c.kv_connector,
            kv_role="kv_both" if c.kv_connector else "",
            kv_engine_id=c.kv_engine_id if c.kv_connector else "",
        )


def _output_lp(pb2: Any, values: dict[str, Any]) -> Any:
    return pb2.OutputLogProbs(
        token_logprobs=values["token_logprobs"],
        token_ids=values["token_ids"],
        top_logprobs=[
            pb2.TopLogProbs(values=t["values"], token_ids=t["token_ids"]) for t in values["top_logprobs"]
        ],
    )
