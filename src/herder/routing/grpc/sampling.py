"""Runtime-neutral generation parameters and the per-runtime proto ``GenerateRequest`` builders.

Proto3 scalar zeros are not the sampling defaults (temperature 1, top_p 1, top_k -1, repetition penalty 1), so
every builder sets every sampling field explicitly, even when the value equals the neutral default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from smg_grpc_proto.generated import (
    mlx_engine_pb2,
    sglang_scheduler_pb2,
    tokenspeed_scheduler_pb2,
    trtllm_service_pb2,
    vllm_engine_pb2,
)

ConstraintKind = Literal["json_schema", "regex", "ebnf", "structural_tag", "json_object", "choice"]

# SGLang / TokenSpeed have no json_object constraint; SMG lowers it to the most permissive object schema.
JSON_OBJECT_SCHEMA = '{"type": "object"}'
# SGLang's default bootstrap port when the prefill worker has none configured (smg-spec 5.2).
DEFAULT_BOOTSTRAP_PORT = 8998
# TRT-LLM's max_tokens is not optional on the wire; used when the caller sets no limit.
TRTLLM_DEFAULT_MAX_TOKENS = 4096


@dataclass(slots=True, frozen=True)
class Constraint:
    """A structured-output constraint. ``value`` is the schema / pattern / grammar / tag text; for
    ``choice`` it is a JSON array of strings; ignored for ``json_object``."""

    kind: ConstraintKind
    value: str = ""


@dataclass(slots=True, frozen=True)
class DisaggregatedParams:
    """SGLang/TokenSpeed PD bootstrap info injected into both the prefill and the decode copy."""

    bootstrap_host: str
    bootstrap_port: int | None
    bootstrap_room: int


@dataclass(slots=True)
class GenerateParams:
    """Everything a Generate call needs, independent of the engine runtime."""

    request_id: str
    input_ids: list[int]
    original_text: str = ""
    max_new_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    ignore_eos: bool = False
    n: int = 1
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    min_new_tokens: int = 0
    logit_bias: dict[int, float] = field(default_factory=dict)
    constraint: Constraint | None = None
    stream: bool = True
    lora_id: str = ""
    data_parallel_rank: int | None = None
    require_reasoning: bool = False
    disaggregated_params: DisaggregatedParams | None = None
    # vLLM connector params (sent as kv_transfer_params_json); a dict passed through verbatim.
    kv_transfer_params: dict[str, Any] | None = None


def _vllm_like_top_k(top_k: int) -> int:
    # vLLM / MLX carry top_k as uint32 where 0 means "disabled" (the neutral -1).
    return top_k if top_k > 0 else 0


def build_sglang_request(p: GenerateParams) -> sglang_scheduler_pb2.GenerateRequest:
    """SGLang scheduler ``GenerateRequest`` with every sampling field explicit."""
    sp = sglang_scheduler_pb2.SamplingParams(
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        min_p=p.min_p,
        frequency_penalty=p.frequency_penalty,
        presence_penalty=p.presence_penalty,
        repetition_penalty=p.repetition_penalty,
        stop=p.stop,
        stop_token_ids=p.stop_token_ids,
        skip_special_tokens=p.skip_special_tokens,
        spaces_between_special_tokens=p.spaces_between_special_tokens,
        n=p.n,
        min_new_tokens=p.min_new_tokens,
        ignore_eos=p.ignore_eos,
        no_stop_trim=p.no_stop_trim,
        logit_bias={str(k): v for k, v in p.logit_bias.items()},
    )
    if p.max_new_tokens is not None:
        sp.max_new_tokens = p.max_new_tokens
    if p.seed is not None:
        # SGLang's proto has no seed field; its servicer reads extra knobs from custom_params.
        sp.custom_params.update({"sampling_seed": p.seed})
    c = p.constraint
    if c is not None:
        if c.kind == "json_schema":
            sp.json_schema = c.value
        elif c.kind == "json_object":
            sp.json_schema = JSON_OBJECT_SCHEMA
        elif c.kind == "regex":
            sp.regex = c.value
        elif c.kind == "ebnf":
            sp.ebnf_grammar = c.value
        elif c.kind == "structural_tag":
            sp.structural_tag = c.value
        elif c.kind == "choice":
            sp.regex = _choice_regex(c.value)
    req = sglang_scheduler_pb2.GenerateRequest(
        request_id=p.request_id,
        tokenized=sglang_scheduler_pb2.TokenizedInput(original_text=p.original_text, input_ids=p.input_ids),
        sampling_params=sp,
        return_logprob=p.logprobs,
        logprob_start_len=-1,
        top_logprobs_num=p.top_logprobs if p.logprobs else 0,
        return_hidden_states=False,
        lora_id=p.lora_id,
        stream=p.stream,
        require_reasoning=p.require_reasoning,
    )
    if p.data_parallel_rank is not None:
        req.data_parallel_rank = p.data_parallel_rank
    d = p.disaggregated_params
    if d is not None:
        req.disaggregated_params.CopyFrom(
            sglang_scheduler_pb2.DisaggregatedParams(
                bootstrap_host=d.bootstrap_host,
                bootstrap_port=d.bootstrap_port if d.bootstrap_port is not None else DEFAULT_BOOTSTRAP_PORT,
                bootstrap_room=d.bootstrap_room,
            )
        )
    return req


def build_vllm_request(p: GenerateParams) -> vllm_engine_pb2.GenerateRequest:
    """vLLM engine ``GenerateRequest`` (optional temperature/max_tokens/logprobs/seed, uint32 top_k)."""
    sp = vllm_engine_pb2.SamplingParams(
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=_vllm_like_top_k(p.top_k),
        min_p=p.min_p,
        frequency_penalty=p.frequency_penalty,
        presence_penalty=p.presence_penalty,
        repetition_penalty=p.repetition_penalty,
        min_tokens=p.min_new_tokens,
        stop=p.stop,
        stop_token_ids=p.stop_token_ids,
        skip_special_tokens=p.skip_special_tokens,
        spaces_between_special_tokens=p.spaces_between_special_tokens,
        ignore_eos=p.ignore_eos,
        n=p.n,
        include_stop_str_in_output=p.no_stop_trim,
        logit_bias=p.logit_bias,
    )
    if p.max_new_tokens is not None:
        sp.max_tokens = p.max_new_tokens
    if p.logprobs:
        sp.logprobs = p.top_logprobs
    if p.seed is not None:
        sp.seed = p.seed
    c = p.constraint
    if c is not None:
        if c.kind == "json_schema":
            sp.json_schema = c.value
        elif c.kind == "json_object":
            sp.json_object = True
        elif c.kind == "regex":
            sp.regex = c.value
        elif c.kind == "ebnf":
            sp.grammar = c.value
        elif c.kind == "structural_tag":
            sp.structural_tag = c.value
        elif c.kind == "choice":
            sp.choice.CopyFrom(vllm_engine_pb2.ChoiceConstraint(choices=json.loads(c.value)))
    req = vllm_engine_pb2.GenerateRequest(
        request_id=p.request_id,
        tokenized=vllm_engine_pb2.TokenizedInput(original_text=p.original_text, input_ids=p.input_ids),
        sampling_params=sp,
        stream=p.stream,
    )
    if p.kv_transfer_params is not None:
        req.kv_transfer_params_json = json.dumps(p.kv_transfer_params, separators=(",", ":"))
    if p.data_parallel_rank is not None:
        req.data_parallel_rank = p.data_parallel_rank
    return req


def build_tokenspeed_request(p: GenerateParams) -> tokenspeed_scheduler_pb2.GenerateRequest:
    """TokenSpeed scheduler ``GenerateRequest`` (best effort: SGLang-like, all-optional sampling)."""
    sp = tokenspeed_scheduler_pb2.SamplingParams(
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        min_p=p.min_p,
        frequency_penalty=p.frequency_penalty,
        presence_penalty=p.presence_penalty,
        repetition_penalty=p.repetition_penalty,
        min_new_tokens=p.min_new_tokens,
        stop=p.stop,
        stop_token_ids=p.stop_token_ids,
        ignore_eos=p.ignore_eos,
        skip_special_tokens=p.skip_special_tokens,
        spaces_between_special_tokens=p.spaces_between_special_tokens,
        n=p.n,
        logit_bias={str(k): v for k, v in p.logit_bias.items()},
        no_stop_trim=p.no_stop_trim,
    )
    if p.max_new_tokens is not None:
        sp.max_new_tokens = p.max_new_tokens
    if p.seed is not None:
        sp.sampling_seed = p.seed
    c = p.constraint
    if c is not None:
        if c.kind == "json_schema":
            sp.json_schema = c.value
        elif c.kind == "json_object":
            sp.json_schema = JSON_OBJECT_SCHEMA
        elif c.kind == "regex":
            sp.regex = c.value
        elif c.kind == "ebnf":
            sp.ebnf_grammar = c.value
        elif c.kind == "structural_tag":
            sp.structural_tag = c.value
        elif c.kind == "choice":
            sp.regex = _choice_regex(c.value)
    req = tokenspeed_scheduler_pb2.GenerateRequest(
        request_id=p.request_id,
        tokenized=tokenspeed_scheduler_pb2.TokenizedInput(
            input_ids=p.input_ids, original_text=p.original_text
        ),
        sampling_params=sp,
        return_logprob=p.logprobs,
        top_logprobs_num=p.top_logprobs if p.logprobs else 0,
        stream=p.stream,
    )
    if p.data_parallel_rank is not None:
        req.data_parallel_rank = p.data_parallel_rank
    d = p.disaggregated_params
    if d is not None:
        req.kv_bootstrap_info.CopyFrom(
            tokenspeed_scheduler_pb2.KvBootstrapInfo(
                bootstrap_host=d.bootstrap_host,
                bootstrap_port=d.bootstrap_port if d.bootstrap_port is not None else DEFAULT_BOOTSTRAP_PORT,
                bootstrap_room=d.bootstrap_room,
            )
        )
    return req


def build_mlx_request(p: GenerateParams) -> mlx_engine_pb2.GenerateRequest:
    """MLX engine ``GenerateRequest`` (best effort: no stop strings, n or constraints on this wire; the
    gateway applies stop strings itself)."""
    sp = mlx_engine_pb2.SamplingParams(
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=_vllm_like_top_k(p.top_k),
        min_p=p.min_p,
        repetition_penalty=p.repetition_penalty,
        frequency_penalty=p.frequency_penalty,
        presence_penalty=p.presence_penalty,
        logit_bias=p.logit_bias,
        stop_token_ids=p.stop_token_ids,
        ignore_eos=p.ignore_eos,
    )
    if p.max_new_tokens is not None:
        sp.max_tokens = p.max_new_tokens
    if p.logprobs:
        sp.logprobs = p.top_logprobs
    if p.seed is not None:
        sp.seed = p.seed
    return mlx_engine_pb2.GenerateRequest(
        request_id=p.request_id,
        tokenized=mlx_engine_pb2.TokenizedInput(original_text=p.original_text, input_ids=p.input_ids),
        sampling_params=sp,
        stream=p.stream,
    )


_TRT_GUIDE = trtllm_service_pb2.GuidedDecodingParams
_TRT_GUIDE_TYPES: dict[str, int] = {
    "json_object": _TRT_GUIDE.GUIDE_TYPE_JSON,
    "json_schema": _TRT_GUIDE.GUIDE_TYPE_JSON_SCHEMA,
    "regex": _TRT_GUIDE.GUIDE_TYPE_REGEX,
    "ebnf": _TRT_GUIDE.GUIDE_TYPE_EBNF_GRAMMAR,
    "structural_tag": _TRT_GUIDE.GUIDE_TYPE_STRUCTURAL_TAG,
}


def build_trtllm_request(p: GenerateParams) -> trtllm_service_pb2.GenerateRequest:
    """TRT-LLM ``GenerateRequest`` (best effort: sampling_config/output_config, guided_decoding)."""
    sc = trtllm_service_pb2.SamplingConfig(
        beam_width=1,
        num_return_sequences=p.n,
        top_k=p.top_k if p.top_k > 0 else 0,
        top_p=p.top_p,
        temperature=p.temperature,
        min_tokens=p.min_new_tokens,
        repetition_penalty=p.repetition_penalty,
        presence_penalty=p.presence_penalty,
        frequency_penalty=p.frequency_penalty,
        min_p=p.min_p,
    )
    if p.seed is not None:
        sc.seed = p.seed
    oc = trtllm_service_pb2.OutputConfig(exclude_input_from_output=True)
    if p.logprobs:
        oc.logprobs = p.top_logprobs
    req = trtllm_service_pb2.GenerateRequest(
        request_id=p.request_id,
        tokenized=trtllm_service_pb2.TokenizedInput(
            original_text=p.original_text, input_token_ids=p.input_ids
        ),
        sampling_config=sc,
        output_config=oc,
        max_tokens=p.max_new_tokens if p.max_new_tokens is not None else TRTLLM_DEFAULT_MAX_TOKENS,
        streaming=p.stream,
        stop=p.stop,
        stop_token_ids=p.stop_token_ids,
        ignore_eos=p.ignore_eos,
        include_stop_token_in_output=p.no_stop_trim,
    )
    c = p.constraint
    if c is not None:
        if c.kind == "choice":
            guide_type, guide = _TRT_GUIDE.GUIDE_TYPE_REGEX, _choice_regex(c.value)
        else:
            guide_type, guide = _TRT_GUIDE_TYPES[c.kind], c.value
        req.guided_decoding.CopyFrom(_TRT_GUIDE(guide_type=guide_type, guide=guide))  # type: ignore[arg-type]
    return req


def _choice_regex(choices_json: str) -> str:
    """An alternation regex matching exactly one of the JSON-encoded choices (for runtimes without choice)."""
    import re

    choices = json.loads(choices_json)
    return "(" + "|".join(re.escape(str(ch)) for ch in choices) + ")"
