"""Per-runtime adapters over smg-grpc-proto: stubs, request builders, and response parsing into
runtime-neutral events.

Parsing is sans-I/O: ``GenerateAssembler.feed(proto_response) -> [events]``. It normalises the runtimes'
different ``GenerateComplete`` conventions (SGLang: cumulative ids; vLLM: the last delta repeated when
streaming, all ids otherwise) so that, in a streaming request, the ``Chunk`` events of an index always cover
every output token exactly once, and ``Complete.output_ids`` is always the full output of that index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from smg_grpc_proto.generated import (
    mlx_engine_pb2,
    mlx_engine_pb2_grpc,
    sglang_scheduler_pb2,
    sglang_scheduler_pb2_grpc,
    tokenspeed_scheduler_pb2,
    tokenspeed_scheduler_pb2_grpc,
    trtllm_service_pb2,
    trtllm_service_pb2_grpc,
    vllm_engine_pb2,
    vllm_engine_pb2_grpc,
)

from herder.routing.grpc.sampling import (
    GenerateParams,
    build_mlx_request,
    build_sglang_request,
    build_tokenspeed_request,
    build_trtllm_request,
    build_vllm_request,
)

# Detection order when no --backend hint is given.
RUNTIME_ORDER: tuple[str, ...] = ("sglang", "vllm", "trtllm", "tokenspeed", "mlx")


# ----------------------------------------------------------------------------------------------- events


@dataclass(slots=True)
class Logprobs:
    """Output logprobs for a run of positions: the sampled token, its logprob, and top alternatives."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.token_ids)

    def sliced(self, start: int, stop: int | None = None) -> Logprobs:
        return Logprobs(self.token_ids[start:stop], self.logprobs[start:stop], self.top[start:stop])

    def extend(self, other: Logprobs) -> None:
        self.token_ids.extend(other.token_ids)
        self.logprobs.extend(other.logprobs)
        self.top.extend(other.top)


@dataclass(slots=True)
class Chunk:
    """New output tokens of choice ``index``; the counts are cumulative for the request."""

    index: int
    token_ids: list[int]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    logprobs: Logprobs | None = None


@dataclass(slots=True)
class Complete:
    """Choice ``index`` finished. ``output_ids`` is its whole output; ``matched_stop`` is the stop token id
    (int) or stop string (str) that ended it, if the engine reported one."""

    index: int
    output_ids: list[int]
    finish_reason: str
    matched_stop: int | str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    logprobs: Logprobs | None = None
    kv_transfer_params: dict[str, Any] | None = None


GenerateEvent = Chunk | Complete


@dataclass(slots=True)
class ModelInfo:
    """What a worker says about its model at registration (GetModelInfo), normalised across runtimes."""

    runtime: str
    model_id: str
    model_path: str
    served_model_name: str
    context_length: int
    vocab_size: int
    eos_token_ids: list[int]
    tokenizer_path: str = ""
    is_generation: bool = True
    supports_vision: bool = False
    model_type: str = ""
    architectures: list[str] = field(default_factory=list)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    max_req_input_len: int | None = None
    default_sampling_params: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ response parsing


def _logprobs_from_output(lp: Any) -> Logprobs | None:
    """SGLang/vLLM/TokenSpeed/MLX ``OutputLogProbs`` -> Logprobs (None when empty)."""
    if not lp.token_ids and not lp.token_logprobs:
        return None
    top = [list(zip(t.token_ids, t.values, strict=False)) for t in lp.top_logprobs]
    return Logprobs(list(lp.token_ids), list(lp.token_logprobs), top)


def _logprobs_from_trt(items: Sequence[Any]) -> Logprobs | None:
    if not items:
        return None
    return Logprobs(
        [t.token_id for t in items],
        [t.logprob for t in items],
        [[(x.token_id, x.logprob) for x in t.top_logprobs] for t in items],
    )


def _matched(msg: Any) -> int | str | None:
    which = msg.WhichOneof("matched_stop")
    if which == "matched_token_id":
        return int(msg.matched_token_id)
    if which == "matched_stop_str":
        return str(msg.matched_stop_str)
    return None


def _kv_params(msg: Any) -> dict[str, Any] | None:
    if msg.HasField("kv_transfer_params_json") and msg.kv_transfer_params_json:
        value = json.loads(msg.kv_transfer_params_json)
        return value if isinstance(value, dict) else {"value": value}
    if msg.HasField("kv_transfer_params"):
        kv = msg.kv_transfer_params
        return {"remote_host": kv.remote_host, "remote_port": kv.remote_port}
    return None


def parse_standard(resp: Any) -> GenerateEvent | None:
    """SGLang / vLLM / TokenSpeed ``GenerateResponse`` -> a raw (wire-convention) event."""
    which = resp.WhichOneof("response")
    if which == "chunk":
        c = resp.chunk
        return Chunk(
            index=c.index,
            token_ids=list(c.token_ids),
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            cached_tokens=c.cached_tokens,
            logprobs=_logprobs_from_output(c.output_logprobs) if c.HasField("output_logprobs") else None,
        )
    if which == "complete":
        m = resp.complete
        kv = _kv_params(m) if isinstance(m, vllm_engine_pb2.GenerateComplete) else None
        return Complete(
            index=m.index,
            output_ids=list(m.output_ids),
            finish_reason=m.finish_reason,
            matched_stop=_matched(m),
            prompt_tokens=m.prompt_tokens,
            completion_tokens=m.completion_tokens,
            cached_tokens=m.cached_tokens,
            logprobs=_logprobs_from_output(m.output_logprobs) if m.HasField("output_logprobs") else None,
            kv_transfer_params=kv,
        )
    return None


def parse_mlx(resp: Any) -> GenerateEvent | None:
    which = resp.WhichOneof("response")
    if which == "chunk":
        return parse_standard(resp)
    if which == "complete":
        m = resp.complete
        return Complete(
            index=m.index,
            output_ids=list(m.output_ids),
            finish_reason=m.finish_reason,
            matched_stop=int(m.matched_stop_token_id) if m.HasField("matched_stop_token_id") else None,
            prompt_tokens=m.prompt_tokens,
            completion_tokens=m.completion_tokens,
            cached_tokens=m.cached_tokens,
            logprobs=_logprobs_from_output(m.output_logprobs) if m.HasField("output_logprobs") else None,
        )
    return None


def parse_trtllm(resp: Any) -> GenerateEvent | None:
    which = resp.WhichOneof("response")
    if which == "chunk":
        c = resp.chunk
        return Chunk(
            index=c.sequence_index,
            token_ids=list(c.token_ids),
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            cached_tokens=c.cached_tokens,
            logprobs=_logprobs_from_trt(c.logprobs),
        )
    if which == "complete":
        m = resp.complete
        return Complete(
            index=m.sequence_index,
            output_ids=list(m.output_token_ids),
            finish_reason=m.finish_reason,
            matched_stop=_matched(m),
            prompt_tokens=m.prompt_tokens,
            completion_tokens=m.completion_tokens,
            cached_tokens=m.cached_tokens,
            logprobs=_logprobs_from_trt(m.logprobs),
        )
    return None


@dataclass(slots=True)
class _IndexState:
    ids: list[int] = field(default_factory=list)
    logprobs: Logprobs = field(default_factory=Logprobs)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    done: bool = False


def split_final(delivered: Sequence[int], final: Sequence[int], total: int) -> tuple[list[int], int]:
    """Reconcile a complete's ids with those already delivered in chunks.

    Returns (full output, how many ids at the end of full output were NOT delivered). ``total`` is the
    engine's completion-token count (0 if unknown). The runtimes disagree on what ``final`` holds: all ids
    (SGLang, any non-streaming complete), a repeat of the last delta (vLLM streaming) or a fresh last delta.
    """
    d, f = list(delivered), list(final)
    if total > 0:
        if len(d) >= total:
            return d, 0  # everything already streamed; final is a repeat or a summary
        if len(f) == total:
            return f, total - len(d)  # cumulative
        if len(d) + len(f) == total:
            return d + f, len(f)  # fresh trailing delta
    # Counts missing or inconsistent: fall back to shape.
    if not d:
        return f, len(f)
    if f[: len(d)] == d:
        return f, len(f) - len(d)
    if len(f) <= len(d) and d[len(d) - len(f) :] == f:
        return d, 0
    return d + f, len(f)


class GenerateAssembler:
    """Sans-I/O normaliser for one Generate stream: feed raw wire events, get neutral events back."""

    def __init__(self, parse: Callable[[Any], GenerateEvent | None], stream: bool) -> None:
        self._parse = parse
        self._stream = stream
        self._states: dict[int, _IndexState] = {}

    def _state(self, index: int) -> _IndexState:
        st = self._states.get(index)
        if st is None:
            st = self._states[index] = _IndexState()
        return st

    @property
    def finished_indices(self) -> set[int]:
        return {i for i, st in self._states.items() if st.done}

    def feed(self, resp: Message) -> list[GenerateEvent]:
        ev = self._parse(resp)
        if ev is None:
            return []
        st = self._state(ev.index)
        if isinstance(ev, Chunk):
            st.ids.extend(ev.token_ids)
            if ev.logprobs is not None:
                st.logprobs.extend(ev.logprobs)
            st.prompt_tokens, st.cached_tokens = ev.prompt_tokens, ev.cached_tokens
            return [ev] if ev.token_ids or ev.logprobs is not None else []
        out: list[GenerateEvent] = []
        full, undelivered = split_final(st.ids, ev.output_ids, ev.completion_tokens)
        logprobs = st.logprobs
        if ev.logprobs is not None:
            if len(ev.logprobs) == len(full):
                logprobs = ev.logprobs  # cumulative
            elif len(logprobs) + len(ev.logprobs) == len(full):
                logprobs = Logprobs(list(logprobs.token_ids), list(logprobs.logprobs), list(logprobs.top))
                logprobs.extend(ev.logprobs)  # fresh trailing delta
        if self._stream and undelivered:
            start = len(full) - undelivered
            out.append(
                Chunk(
                    index=ev.index,
                    token_ids=full[start:],
                    prompt_tokens=ev.prompt_tokens,
                    completion_tokens=ev.completion_tokens or len(full),
                    cached_tokens=ev.cached_tokens,
                    logprobs=logprobs.sliced(start) if len(logprobs) == len(full) else None,
                )
            )
        st.ids, st.done = full, True
        ev.output_ids = full
        ev.completion_tokens = ev.completion_tokens or len(full)
        ev.logprobs = logprobs if len(logprobs) else None
        out.append(ev)
        return out


# ------------------------------------------------------------------------------------------ runtimes


def _model_info_standard(runtime: str, m: Any) -> ModelInfo:
    """SGLang / vLLM / TokenSpeed / MLX GetModelInfoResponse -> ModelInfo."""
    served = m.served_model_name
    defaults: dict[str, Any] = {}
    raw = getattr(m, "default_sampling_params_json", "") or getattr(m, "preferred_sampling_params", "")
    if raw:
        try:
            parsed = json.loads(raw)
            defaults = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            defaults = {}
    return ModelInfo(
        runtime=runtime,
        model_id=served or m.model_path,
        model_path=m.model_path,
        served_model_name=served,
        context_length=int(m.max_context_length),
        vocab_size=int(m.vocab_size),
        eos_token_ids=[int(x) for x in m.eos_token_ids],
        tokenizer_path=getattr(m, "tokenizer_path", ""),
        is_generation=bool(getattr(m, "is_generation", True)),
        supports_vision=bool(getattr(m, "supports_vision", False)),
        model_type=m.model_type,
        architectures=list(m.architectures),
        pad_token_id=int(m.pad_token_id),
        bos_token_id=int(m.bos_token_id),
        max_req_input_len=int(m.max_req_input_len) or None,
        default_sampling_params=defaults,
    )


def _model_info_trtllm(runtime: str, m: Any) -> ModelInfo:
    return ModelInfo(
        runtime=runtime,
        model_id=m.model_id,
        model_path=m.model_id,
        served_model_name=m.model_id,
        context_length=int(m.max_seq_len),
        vocab_size=int(m.vocab_size),
        eos_token_ids=[],
        max_req_input_len=int(m.max_input_len) or None,
    )


def _healthy_standard(resp: Any) -> bool:
    return bool(resp.healthy)


def _healthy_trtllm(resp: Any) -> bool:
    return str(resp.status).upper() == "OK"


def message_to_dict(msg: Message) -> dict[str, Any]:
    """A proto message as a plain dict with proto field names and default-valued fields included."""
    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


@dataclass(slots=True, frozen=True)
class RuntimeSpec:
    """Everything that differs between runtimes on the wire."""

    name: str
    pb2: Any
    stub_cls: Any
    build_request: Callable[[GenerateParams], Message]
    parse: Callable[[Any], GenerateEvent | None]
    model_info: Callable[[str, Any], ModelInfo]
    healthy: Callable[[Any], bool]
    abort_takes_list: bool
    has_loads: bool
    has_flush: bool
    has_embed: bool


RUNTIMES: dict[str, RuntimeSpec] = {
    "sglang": RuntimeSpec(
        "sglang",
        sglang_scheduler_pb2,
        sglang_scheduler_pb2_grpc.SglangSchedulerStub,
        build_sglang_request,
        parse_standard,
        _model_info_standard,
        _healthy_standard,
        abort_takes_list=False,
        has_loads=True,
        has_flush=True,
        has_embed=True,
    ),
    "vllm": RuntimeSpec(
        "vllm",
        vllm_engine_pb2,
        vllm_engine_pb2_grpc.VllmEngineStub,
        build_vllm_request,
        parse_standard,
        _model_info_standard,
        _healthy_standard,
        abort_takes_list=True,
        has_loads=True,
        has_flush=True,
        has_embed=True,
    ),
    "trtllm": RuntimeSpec(
        "trtllm",
        trtllm_service_pb2,
        trtllm_service_pb2_grpc.TrtllmServiceStub,
        build_trtllm_request,
        parse_trtllm,
        _model_info_trtllm,
        _healthy_trtllm,
        abort_takes_list=False,
        has_loads=False,
        has_flush=False,
        has_embed=True,
    ),
    "tokenspeed": RuntimeSpec(
        "tokenspeed",
        tokenspeed_scheduler_pb2,
        tokenspeed_scheduler_pb2_grpc.TokenSpeedSchedulerStub,
        build_tokenspeed_request,
        parse_standard,
        _model_info_standard,
        _healthy_standard,
        abort_takes_list=False,
        has_loads=True,
        has_flush=True,
        has_embed=False,
    ),
    "mlx": RuntimeSpec(
        "mlx",
        mlx_engine_pb2,
        mlx_engine_pb2_grpc.MlxEngineStub,
        build_mlx_request,
        parse_mlx,
        _model_info_standard,
        _healthy_standard,
        abort_takes_list=True,
        has_loads=False,
        has_flush=False,
        has_embed=False,
    ),
}


def build_generate_request(runtime: str, params: GenerateParams) -> Message:
    """The runtime's proto GenerateRequest for ``params``."""
    return RUNTIMES[runtime].build_request(params)
