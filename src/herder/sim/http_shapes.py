"""Pure request parsing and response shapes for the simulated HTTP worker (no I/O).

OpenAI chat / completions / embeddings / rerank / classify and SGLang /generate bodies are read into a
``GenSpec``; ``full_response`` and ``StreamEvents`` build the JSON bodies and SSE events from the engine's
planned ``Output``s. Split from ``http_worker.py`` to keep the transport (pacing, disconnects) apart from the
wire shapes. The info endpoints (``models``, ``model_info``, ``server_info``, ``worker_loads``, ``prometheus``)
live in ``http_info.py`` and are re-exported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from herder.sim.engine import Output, SimEngine, SimRequest
from herder.sim.http_info import model_info as model_info
from herder.sim.http_info import models as models
from herder.sim.http_info import prometheus as prometheus
from herder.sim.http_info import server_info as server_info
from herder.sim.http_info import worker_loads as worker_loads
from herder.sim.text import (
    WORDS,
    piece_id,
    prompt_pieces,
    render_chat,
    stable_hash,
    stable_hash_ids,
    word_piece,
)


class BadRequest(Exception):
    """A request the worker rejects with 400 (message goes to the client)."""


@dataclass(slots=True)
class Prompt:
    """One prompt of a request: its cache units, output seed and (for echo) text."""

    units: list[Any]
    seed: int
    text: str = ""
    ids: list[int] | None = None


@dataclass(slots=True)
class GenSpec:
    """What a generation request asks for, independent of its API."""

    kind: Literal["chat", "cmpl", "gen"]
    model: str
    prompts: list[Prompt]
    n: int = 1
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None
    echo: bool = False
    batched: bool = False
    scripted: str | None = None
    same_seed: bool = False
    rid: str | None = None


@dataclass(slots=True)
class Choice:
    index: int
    prompt: int
    out: Output


# -- request parsing (pure) ----------------------------------------------------------------------------------
def model_name(body: dict[str, Any], eng: SimEngine) -> str:
    """The request's model (echoed like SGLang does), else the served name."""
    m = body.get("model")
    return m if isinstance(m, str) and m else eng.config.model


def _text_prompt(text: str) -> Prompt:
    return Prompt(prompt_pieces(text), stable_hash(text), text)


def _ids_prompt(ids: list[Any]) -> Prompt:
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
        raise BadRequest("token ids must be non-negative integers")
    return Prompt(ids, stable_hash_ids(ids), "", ids)


def _prompts(value: Any, what: str) -> tuple[list[Prompt], bool]:
    """A prompt field (str | list[str] | list[int] | list[list[int]]) -> prompts, and whether it was a batch."""
    if isinstance(value, str):
        return [_text_prompt(value)], False
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [_text_prompt(v) for v in value], True
        if all(isinstance(v, list) and v for v in value):
            return [_ids_prompt(v) for v in value], True
        return [_ids_prompt(value)], False
    raise BadRequest(f"'{what}' must be a non-empty string, list of strings or list of token ids")


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise BadRequest("'stop' must be a string or a list of strings")


def _int_field(d: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = d.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be an integer in [{lo}, {hi}]")
    return v


def parse_generation(kind: Literal["chat", "cmpl", "gen"], body: dict[str, Any], eng: SimEngine) -> GenSpec:
    """Read a chat / completions / generate body into a ``GenSpec``; raises BadRequest."""
    if kind == "gen":
        sp = body.get("sampling_params") or {}
        if not isinstance(sp, dict):
            raise BadRequest("'sampling_params' must be an object")
        src, what = (
            (body.get("input_ids"), "input_ids") if body.get("text") is None else (body["text"], "text")
        )
        prompts, batched = _prompts(src, what)
        opts = sp
    else:
        opts = body
        if kind == "chat":
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise BadRequest("'messages' must be a non-empty list")
            prompts, batched = [_text_prompt(render_chat(msgs))], False
        else:
            prompts, batched = _prompts(body.get("prompt"), "prompt")
    raw_max = (
        opts.get("max_new_tokens")
        if kind == "gen"
        else opts.get("max_completion_tokens", opts.get("max_tokens"))
    )
    try:
        max_tokens = eng.max_tokens(raw_max)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    stop_ids = opts.get("stop_token_ids") or []
    if not isinstance(stop_ids, list) or not all(isinstance(t, int) for t in stop_ids):
        raise BadRequest("'stop_token_ids' must be a list of integers")
    spec = GenSpec(kind, model_name(body, eng), prompts, batched=batched)
    spec.n = _int_field(opts, "n", 1, 1, 128)
    spec.max_tokens = max_tokens
    spec.stop = _stop(opts.get("stop"))
    spec.stop_token_ids = stop_ids
    spec.stream = bool(body.get("stream"))
    so = body.get("stream_options")
    spec.include_usage = isinstance(so, dict) and bool(so.get("include_usage"))
    spec.same_seed = opts.get("temperature") == 0
    if kind == "chat" and body.get("logprobs"):
        spec.logprobs = _int_field(body, "top_logprobs", 0, 0, 20)
    elif kind == "cmpl" and body.get("logprobs") is not None:
        spec.logprobs = _int_field(body, "logprobs", 0, 0, 20)
    elif kind == "gen" and body.get("return_logprob"):
        spec.logprobs = 0
    spec.echo = kind == "cmpl" and bool(body.get("echo"))
    scripted = body.get("sim_output")
    spec.scripted = scripted if isinstance(scripted, str) else None
    rid = body.get("rid")
    spec.rid = rid if isinstance(rid, str) and rid else None
    return spec


def embedding_inputs(value: Any) -> tuple[list[str], list[int], list[int]]:
    """Embedding / classify input -> (texts for the cache, seeds, token counts)."""
    prompts, _ = _prompts(value, "input")
    texts = [p.text if p.ids is None else " ".join(map(str, p.ids)) for p in prompts]
    return texts, [p.seed for p in prompts], [len(p.units) for p in prompts]


def rerank_inputs(body: dict[str, Any]) -> tuple[str, list[str], int, bool]:
    query = body.get("query")
    docs = body.get("documents")
    if not isinstance(query, str) or not isinstance(docs, list) or not docs:
        raise BadRequest("rerank needs a string 'query' and a non-empty list 'documents'")
    texts: list[str] = []
    for d in docs:
        t = d.get("text") if isinstance(d, dict) else d
        if not isinstance(t, str):
            raise BadRequest("each document must be a string or {'text': string}")
        texts.append(t)
    top_n = _int_field(body, "top_n", len(texts), 1, 1 << 20)
    return query, texts, top_n, body.get("return_documents", True) is not False


# -- response shapes (pure) ----------------------------------------------------------------------------------
def _lp(token_id: int) -> float:
    """A deterministic log-probability for a token."""
    return -round(((token_id * 2654435761) % 4093) / 1000.0, 4)


def _usage(runs: list[SimRequest], choices: list[Choice]) -> dict[str, Any]:
    pt = sum(r.prompt_tokens for r in runs)
    ct = sum(len(c.out.token_ids) for c in choices)
    cached = sum(r.cached_tokens for r in runs)
    return {
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "total_tokens": pt + ct,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _chat_lp(tid: int, piece: str, top: int) -> dict[str, Any]:
    entry = {"token": piece, "logprob": _lp(tid), "bytes": list(piece.encode())}
    alts = [entry] + [
        {"token": word_piece(tid + k), "logprob": _lp(tid) - k, "bytes": list(word_piece(tid + k).encode())}
        for k in range(1, top)
    ]
    return {**entry, "top_logprobs": alts[:top]}


def _cmpl_lp(c: Choice, top: int, start: int = 0, offset: int = 0) -> dict[str, Any]:
    ids, pieces = c.out.token_ids[start:], c.out.pieces[start:]
    offsets, pos = [], offset
    for p in pieces:
        offsets.append(pos)
        pos += len(p)
    return {
        "tokens": pieces,
        "token_logprobs": [_lp(t) for t in ids],
        "top_logprobs": [
            {p: _lp(t)} | {word_piece(t + k): _lp(t) - k for k in range(1, top)}
            for t, p in zip(ids, pieces, strict=True)
        ]
        if top
        else None,
        "text_offset": offsets,
    }


def _finish_reason(out: Output) -> dict[str, Any]:
    if out.finish_reason == "length":
        return {"type": "length", "length": len(out.token_ids)}
    return {"type": "stop", "matched": out.matched_stop}


def _gen_item(spec: GenSpec, prompt: Prompt, run: SimRequest, c: Choice, e2e: float) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": run.id if len(spec.prompts) * spec.n == 1 else f"{run.id}-{c.index}",
        "finish_reason": _finish_reason(c.out),
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": len(c.out.token_ids),
        "cached_tokens": run.cached_tokens,
        "weight_version": "default",
        "e2e_latency": round(e2e, 6),
    }
    if spec.logprobs is not None:
        in_ids = prompt.ids if prompt.ids is not None else [piece_id(u) for u in prompt.units]
        meta["input_token_logprobs"] = [[None if k == 0 else _lp(t), t, None] for k, t in enumerate(in_ids)]
        meta["output_token_logprobs"] = [[_lp(t), t, None] for t in c.out.token_ids]
    return {"text": c.out.text, "output_ids": c.out.token_ids, "meta_info": meta}


def full_response(spec: GenSpec, runs: list[SimRequest], choices: list[Choice], e2e: float) -> Any:
    """The non-streamed response body of a generation request."""
    r0 = runs[0]
    if spec.kind == "gen":
        items = [_gen_item(spec, spec.prompts[c.prompt], runs[c.prompt], c, e2e) for c in choices]
        return items if spec.batched or spec.n > 1 else items[0]
    out: list[dict[str, Any]] = []
    for c in choices:
        lp: Any = None
        if spec.kind == "chat":
            if spec.logprobs is not None:
                lp = {
                    "content": [
                        _chat_lp(t, p, spec.logprobs)
                        for t, p in zip(c.out.token_ids, c.out.pieces, strict=True)
                    ]
                }
            msg = {"role": "assistant", "content": c.out.text, "reasoning_content": None, "tool_calls": None}
            out.append(
                {
                    "index": c.index,
                    "message": msg,
                    "logprobs": lp,
                    "finish_reason": c.out.finish_reason,
                    "matched_stop": c.out.matched_stop,
                }
            )
        else:
            prefix = spec.prompts[c.prompt].text if spec.echo else ""
            if spec.logprobs is not None:
                lp = _cmpl_lp(c, spec.logprobs, offset=len(prefix))
            out.append(
                {
                    "index": c.index,
                    "text": prefix + c.out.text,
                    "logprobs": lp,
                    "finish_reason": c.out.finish_reason,
                    "matched_stop": c.out.matched_stop,
                }
            )
    return {
        "id": ("chatcmpl-" if spec.kind == "chat" else "cmpl-") + r0.id,
        "object": "chat.completion" if spec.kind == "chat" else "text_completion",
        "created": r0.created,
        "model": spec.model,
        "choices": out,
        "usage": _usage(runs, choices),
    }


_HOLE = "@@herder-sim-token@@"
_HOLE_JSON = orjson.dumps(_HOLE)
_WORD_JSON = {w: orjson.dumps(w) for w in WORDS}


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class StreamEvents:
    """Builds the SSE events of a streamed generation: ``head()``, ``token(choice, t)``, ``tail(e2e)``."""

    __slots__ = ("base", "choices", "frames", "runs", "spec")

    def __init__(self, spec: GenSpec, runs: list[SimRequest], choices: list[Choice]) -> None:
        self.spec, self.runs, self.choices = spec, runs, choices
        r0 = runs[0]
        if spec.kind == "chat":
            self.base = {
                "id": "chatcmpl-" + r0.id,
                "object": "chat.completion.chunk",
                "created": r0.created,
                "model": spec.model,
            }
        else:
            self.base = {
                "id": "cmpl-" + r0.id,
                "object": "text_completion",
                "created": r0.created,
                "model": spec.model,
            }

        # Fast path (no logprobs): one pre-serialised frame per choice with a hole for the token text.
        self.frames: list[tuple[bytes, bytes]] | None = None
        if spec.kind != "gen" and spec.logprobs is None:
            frames = []
            for c in choices:
                if spec.kind == "chat":
                    ch = {
                        "index": c.index,
                        "delta": {"content": _HOLE},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                else:
                    ch = {"index": c.index, "text": _HOLE, "logprobs": None, "finish_reason": None}
                parts = self._chunk(ch).split(_HOLE_JSON)
                if len(parts) != 2:
                    break
                frames.append((parts[0], parts[1]))
            else:
                self.frames = frames

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return _sse({**self.base, "choices": [choice]})

    def head(self) -> bytes:
        spec = self.spec
        if spec.kind == "chat":
            return b"".join(
                self._chunk(
                    {
                        "index": c.index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
                for c in self.choices
            )
        if spec.kind == "cmpl" and spec.echo:
            return b"".join(
                self._chunk(
                    {
                        "index": c.index,
                        "text": spec.prompts[c.prompt].text,
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
                for c in self.choices
            )
        return b""

    def token(self, c: Choice, t: int) -> bytes:
        spec, out = self.spec, c.out
        if self.frames is not None:
            pre, post = self.frames[c.index]
            piece = out.pieces[t]
            return pre + (_WORD_JSON.get(piece) or orjson.dumps(piece)) + post
        if spec.kind == "chat":
            lp = None
            if spec.logprobs is not None:
                lp = {"content": [_chat_lp(out.token_ids[t], out.pieces[t], spec.logprobs)]}
            return self._chunk(
                {"index": c.index, "delta": {"content": out.pieces[t]}, "logprobs": lp, "finish_reason": None}
            )
        if spec.kind == "cmpl":
            lp = (
                _cmpl_lp(
                    Choice(c.index, c.prompt, Output(out.token_ids[: t + 1], out.pieces[: t + 1], "")),
                    spec.logprobs,
                    start=t,
                )
                if spec.logprobs is not None
                else None
            )
            return self._chunk(
                {"index": c.index, "text": out.pieces[t], "logprobs": lp, "finish_reason": None}
            )
        return self._gen_event(c, t + 1, final=t + 1 == len(out.token_ids))

    def _gen_event(self, c: Choice, n: int, final: bool) -> bytes:
        run, out = self.runs[c.prompt], c.out
        meta: dict[str, Any] = {
            "id": run.id,
            "finish_reason": _finish_reason(out) if final else None,
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": n,
            "cached_tokens": run.cached_tokens,
        }
        if final:
            meta["e2e_latency"] = round(time.monotonic() - run.started, 6)
        ev: dict[str, Any] = {
            "text": "".join(out.pieces[:n]),
            "output_ids": out.token_ids[:n],
            "meta_info": meta,
        }
        if self.spec.batched or self.spec.n > 1:
            ev["index"] = c.index
        return _sse(ev)

    def tail(self, e2e: float) -> bytes:
        spec = self.spec
        parts: list[bytes] = []
        if spec.kind == "gen":
            parts.extend(self._gen_event(c, 0, final=True) for c in self.choices if not c.out.token_ids)
        else:
            for c in self.choices:
                if spec.kind == "chat":
                    ch = {"index": c.index, "delta": {}, "logprobs": None}
                else:
                    ch = {"index": c.index, "text": "", "logprobs": None}
                parts.append(
                    self._chunk(
                        {**ch, "finish_reason": c.out.finish_reason, "matched_stop": c.out.matched_stop}
                    )
                )
            if spec.include_usage:
                parts.append(_sse({**self.base, "choices": [], "usage": _usage(self.runs, self.choices)}))
        parts.append(b"data: [DONE]\n\n")
        return b"".join(parts)
