"""Request fields -> `GenerateParams`: every sampling parameter mapped explicitly, validated once.

OpenAI chat/completions bodies carry sampling fields at the top level (plus SGLang extras: `top_k`, `min_p`,
`regex`, `ebnf`, `no_stop_trim`, ...); SGLang `/generate` carries them in `sampling_params`. Both go through
`SamplingFields` so defaults live in one place: temperature 1, top_p 1, top_k -1, min_p 0, penalties 0 / 1.
Bad values are 400s here, never a gRPC INVALID_ARGUMENT from the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from herder.routing.grpc.sampling import Constraint, GenerateParams
from herder.server import errors
from herder.server.errors import HttpError

MAX_TOP_LOGPROBS = 20


def bad(message: str, param: str | None = None) -> HttpError:
    """A 400 invalid_request error naming the offending field."""
    return HttpError(400, errors.INVALID_REQUEST, message, param)


def _number(
    body: Mapping[str, Any], name: str, default: float, *, lo: float | None = None, hi: float | None = None
) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"'{name}' must be a number", name)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise bad(f"'{name}' must be between {lo} and {hi}, got {value}", name)
    return float(value)


def _int(body: Mapping[str, Any], name: str, default: int | None, *, lo: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer", name)
    if lo is not None and value < lo:
        raise bad(f"'{name}' must be >= {lo}, got {value}", name)
    return value


def _bool(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be a boolean", name)
    return value


def _stop_strings(value: Any, name: str = "stop") -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return [s for s in value if s]
    raise bad(f"'{name}' must be a string or an array of strings", name)


def _int_list(value: Any, name: str) -> list[int]:
    if value is None:
        return []
    if isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value
    ):
        return list(value)
    raise bad(f"'{name}' must be an array of non-negative integers", name)


def _logit_bias(value: Any) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad("'logit_bias' must be an object of token id -> bias", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            tid = int(key)
        except (TypeError, ValueError):
            raise bad(f"'logit_bias' key {key!r} is not a token id", "logit_bias") from None
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise bad("'logit_bias' values must be numbers between -100 and 100", "logit_bias")
        out[tid] = float(bias)
    return out


@dataclass(slots=True)
class SamplingFields:
    """The engine-independent sampling fields of one request (before per-prompt fields are known)."""

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

    def params(
        self,
        request_id: str,
        input_ids: list[int],
        original_text: str,
        *,
        stream: bool,
        context_length: int,
        n: int | None = None,
    ) -> GenerateParams:
        """The GenerateParams for one prompt. Without max_tokens the limit is what the context has left."""
        max_new = self.max_new_tokens
        if context_length > 0:
            room = context_length - len(input_ids)
            if room <= 0:
                raise bad(
                    f"The prompt has {len(input_ids)} tokens, which exceeds the model's context length "
                    f"of {context_length}",
                    "messages",
                )
            max_new = room if max_new is None else min(max_new, room)
        return GenerateParams(
            request_id=request_id, input_ids=input_ids, original_text=original_text, max_new_tokens=max_new,
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            repetition_penalty=self.repetition_penalty, stop=self.stop, stop_token_ids=self.stop_token_ids,
            skip_special_tokens=self.skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens, no_stop_trim=self.no_stop_trim,
            ignore_eos=self.ignore_eos, n=self.n if n is None else n, seed=self.seed, logprobs=self.logprobs,
            top_logprobs=self.top_logprobs, min_new_tokens=self.min_new_tokens, logit_bias=self.logit_bias,
            constraint=self.constraint, stream=stream,
        )  # fmt: skip


def _common(body: Mapping[str, Any], out: SamplingFields) -> None:
    """Fields with the same name in OpenAI bodies and SGLang sampling_params."""
    out.temperature = _number(body, "temperature", 1.0, lo=0.0, hi=100.0)
    out.top_p = _number(body, "top_p", 1.0, lo=0.0, hi=1.0)
    if out.top_p == 0.0:
        raise bad("'top_p' must be > 0", "top_p")
    top_k = _int(body, "top_k", -1)
    assert top_k is not None
    if top_k == 0 or top_k < -1:
        raise bad("'top_k' must be -1 (disabled) or >= 1", "top_k")
    out.top_k = top_k
    out.min_p = _number(body, "min_p", 0.0, lo=0.0, hi=1.0)
    out.frequency_penalty = _number(body, "frequency_penalty", 0.0, lo=-2.0, hi=2.0)
    out.presence_penalty = _number(body, "presence_penalty", 0.0, lo=-2.0, hi=2.0)
    out.repetition_penalty = _number(body, "repetition_penalty", 1.0, lo=0.0, hi=2.0)
    if out.repetition_penalty == 0.0:
        raise bad("'repetition_penalty' must be > 0", "repetition_penalty")
    out.stop = _stop_strings(body.get("stop"))
    out.stop_token_ids = _int_list(body.get("stop_token_ids"), "stop_token_ids")
    out.skip_special_tokens = _bool(body, "skip_special_tokens", True)
    out.spaces_between_special_tokens = _bool(body, "spaces_between_special_tokens", True)
    out.no_stop_trim = _bool(body, "no_stop_trim", False)
    out.ignore_eos = _bool(body, "ignore_eos", False)
    out.n = _int(body, "n", 1, lo=1) or 1
    out.logit_bias = _logit_bias(body.get("logit_bias"))


def _seed(body: Mapping[str, Any]) -> int | None:
    seed = _int(body, "seed", None)
    return _int(body, "sampling_seed", None) if seed is None else seed


def constraint_of(body: Mapping[str, Any], *, response_format: bool = True) -> Constraint | None:
    """At most one of response_format (json_schema / json_object), regex, ebnf, json_schema (SGLang)."""
    found: list[Constraint] = []
    if response_format:
        rf = body.get("response_format")
        if rf is not None:
            if not isinstance(rf, dict) or not isinstance(rf.get("type"), str):
                raise bad("'response_format' must be an object with a 'type'", "response_format")
            kind = rf["type"]
            if kind == "json_schema":
                spec = rf.get("json_schema")
                schema = spec.get("schema") if isinstance(spec, dict) else None
                if not isinstance(schema, dict | bool):
                    raise bad(
                        "'response_format.json_schema.schema' must be a JSON schema object", "response_format"
                    )
                found.append(Constraint("json_schema", json.dumps(schema, separators=(",", ":"))))
            elif kind == "json_object":
                found.append(Constraint("json_object"))
            elif kind != "text":
                raise bad(
                    f"'response_format.type' must be text, json_object or json_schema, not {kind!r}",
                    "response_format",
                )
    for name, kind in (
        ("regex", "regex"),
        ("ebnf", "ebnf"),
        ("json_schema", "json_schema"),
        ("structural_tag", "structural_tag"),
    ):
        value = body.get(name)
        if value is None:
            continue
        if kind == "json_schema" and isinstance(value, dict):
            value = json.dumps(value, separators=(",", ":"))
        if not isinstance(value, str) or not value:
            raise bad(f"'{name}' must be a non-empty string", name)
        found.append(Constraint(kind, value))  # type: ignore[arg-type]
    if len(found) > 1:
        raise bad(
            "Only one structured-output constraint is allowed (response_format, regex, ebnf, json_schema)",
            "response_format",
        )
    return found[0] if found else None


def openai_sampling(body: Mapping[str, Any], *, chat: bool) -> SamplingFields:
    """Sampling fields of a chat or completions body."""
    out = SamplingFields()
    _common(body, out)
    max_tokens = _int(body, "max_completion_tokens", None, lo=0) if chat else None
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", None, lo=0)
    out.max_new_tokens = max_tokens
    out.min_new_tokens = _int(body, "min_tokens", 0, lo=0) or 0
    out.seed = _seed(body)
    if chat:
        out.logprobs = _bool(body, "logprobs", False)
        top = _int(body, "top_logprobs", 0, lo=0) or 0
        if top > MAX_TOP_LOGPROBS:
            raise bad(f"'top_logprobs' must be <= {MAX_TOP_LOGPROBS}", "top_logprobs")
        if top and not out.logprobs:
            raise bad("'top_logprobs' requires 'logprobs': true", "top_logprobs")
        out.top_logprobs = top
    else:
        lp = _int(body, "logprobs", None, lo=0)
        if lp is not None and lp > MAX_TOP_LOGPROBS:
            raise bad(f"'logprobs' must be <= {MAX_TOP_LOGPROBS}", "logprobs")
        out.logprobs = lp is not None
        out.top_logprobs = lp or 0
    out.constraint = constraint_of(body, response_format=True)
    return out


def sglang_sampling(body: Mapping[str, Any]) -> SamplingFields:
    """Sampling fields of an SGLang /generate body (`sampling_params` plus the top-level logprob fields)."""
    sp = body.get("sampling_params") or {}
    if not isinstance(sp, dict):
        raise bad("'sampling_params' must be an object", "sampling_params")
    out = SamplingFields()
    _common(sp, out)
    out.max_new_tokens = _int(sp, "max_new_tokens", None, lo=0)
    out.min_new_tokens = _int(sp, "min_new_tokens", 0, lo=0) or 0
    out.seed = _seed(sp)
    out.logprobs = _bool(body, "return_logprob", False)
    top = _int(body, "top_logprobs_num", 0, lo=0) or 0
    if top > MAX_TOP_LOGPROBS:
        raise bad(f"'top_logprobs_num' must be <= {MAX_TOP_LOGPROBS}", "top_logprobs_num")
    out.top_logprobs = top
    out.constraint = constraint_of(sp, response_format=False)
    return out
