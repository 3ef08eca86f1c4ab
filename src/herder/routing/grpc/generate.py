"""POST /generate (SGLang native) over gRPC: `text` or `input_ids`, `sampling_params`, `return_logprob`.

Response shapes follow SGLang: `{"text", "output_ids", "meta_info": {"id", "finish_reason", "prompt_tokens",
"completion_tokens", "cached_tokens", "e2e_latency", ["output_token_logprobs", "output_top_logprobs"]}}`, a
list of those for batched input or n > 1. Streaming sends the same object with the cumulative text and ids
after every step (SGLang's default), then `data: [DONE]`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from herder.routing.context import RequestContext
from herder.routing.grpc.chat import SSE_HEADERS
from herder.routing.grpc.choices import Choices
from herder.routing.grpc.client import GrpcCallError
from herder.routing.grpc.completions import prompts_of
from herder.routing.grpc.output import OutputConfig
from herder.routing.grpc.params import bad, sglang_sampling
from herder.routing.grpc.router import (
    SSE_DONE,
    GrpcRouter,
    Stream,
    close_all,
    engine_request_id,
    http_error,
    mark_first_token,
    merge,
    stream_error,
)
from herder.routing.grpc.runtimes import Logprobs
from herder.server import errors
from herder.server.http import Reply


def _finish_json(reason: str | None, matched: int | str | None, count: int) -> dict[str, Any] | None:
    if reason is None:
        return None
    if reason == "length":
        return {"type": "length", "length": count}
    if reason in ("stop", "tool_calls"):
        return {"type": "stop", "matched": matched}
    return {"type": reason}


def _lp_json(lp: Logprobs | None) -> tuple[list[Any], list[Any]]:
    if lp is None:
        return [], []
    tokens = [[v, t, None] for t, v in zip(lp.token_ids, lp.logprobs, strict=False)]
    top = [[[v, t, None] for t, v in alts] for alts in lp.top]
    return tokens, top


class _Obj:
    """Cumulative state of one output object."""

    __slots__ = ("finish", "lp", "text")

    def __init__(self) -> None:
        self.text = ""
        self.finish: str | None = None
        self.lp = Logprobs()


async def handle_generate(router: GrpcRouter, ctx: RequestContext, reply: Reply) -> None:
    body = ctx.parsed
    state = router.state
    entry = state.tokenizer(ctx.model)
    if body.get("text") is not None and body.get("input_ids") is not None:
        raise bad("Give either 'text' or 'input_ids', not both", "text")
    field = "text" if body.get("text") is not None else "input_ids"
    value = body[field]
    if field == "input_ids" and isinstance(value, str):
        raise bad("'input_ids' must be token ids", "input_ids")
    prompts = await prompts_of(entry, value, field)
    sampling = sglang_sampling(body)
    meta = state.meta(ctx.model)
    eos = (
        [] if sampling.ignore_eos else list(dict.fromkeys(entry.tokenizer.eos_token_ids + meta.eos_token_ids))
    )
    cfg = OutputConfig(tokenizer=entry.tokenizer, skip_special_tokens=sampling.skip_special_tokens,
                       stop=sampling.stop, stop_token_ids=eos + sampling.stop_token_ids,
                       no_stop_trim=sampling.no_stop_trim)  # fmt: skip
    rid = body.get("rid") if isinstance(body.get("rid"), str) else None
    params = [sampling.params(engine_request_id(ctx, i if len(prompts) > 1 else None), ids, text,
                              stream=ctx.stream, context_length=meta.context_length)
              for i, (text, ids) in enumerate(prompts)]  # fmt: skip
    choices = Choices([cfg] * len(prompts), sampling.n, stream=ctx.stream)
    for i, (_, ids) in enumerate(prompts):
        choices.prompt_tokens[i] = len(ids)
    many = len(choices.outputs) > 1 or (
        isinstance(value, list) and bool(value) and not isinstance(value[0], int)
    )
    streams = await router.open_streams(ctx, params, reply)
    objs = [_Obj() for _ in choices.outputs]
    ident = rid or ctx.request_id.decode("latin-1")
    started = ctx.started_at

    def obj_json(index: int) -> dict[str, Any]:
        o = objs[index]
        stream_no = index // choices.n
        ids = choices.output_ids[index]
        info: dict[str, Any] = {
            "id": ident if not many else f"{ident}-{index}",
            "finish_reason": _finish_json(o.finish, choices.matched(index), len(ids)),
            "prompt_tokens": choices.prompt_tokens[stream_no], "completion_tokens": len(ids),
            "cached_tokens": choices.cached_tokens[stream_no], "e2e_latency": time.monotonic() - started,
        }  # fmt: skip
        if sampling.logprobs:
            info["output_token_logprobs"], info["output_top_logprobs"] = _lp_json(o.lp)
        out: dict[str, Any] = {"text": o.text, "output_ids": ids, "meta_info": info}
        if many:
            out["index"] = index
        return out

    early_exit = any(s.worker.runtime_type == "mlx" for s in streams)
    status, code = 200, None
    if ctx.stream:
        try:
            reply.start_stream(200, SSE_HEADERS)
            async for stream_no, event in merge(streams):
                ev = choices.on_event(stream_no, event)
                if ev is None:
                    continue
                o = objs[ev.index]
                o.text += ev.delta.content
                if ev.logprobs is not None:
                    o.lp.extend(ev.logprobs)
                o.finish = ev.finish_reason
                mark_first_token(ctx, router.hooks)
                await reply.write(b"data: " + orjson.dumps(obj_json(ev.index)) + b"\n\n")
                if early_exit and choices.all_finished:
                    break
            tail = []
            for ev in choices.finish_open():
                objs[ev.index].text += ev.delta.content
                objs[ev.index].finish = ev.finish_reason
                tail.append(b"data: " + orjson.dumps(obj_json(ev.index)) + b"\n\n")
            ctx.usage_tail = orjson.dumps({"usage": choices.usage()})
            reply.end_stream(b"".join(tail) + SSE_DONE)
        except Exception as exc:
            if reply.closed:
                raise
            payload, status, code = stream_error(exc, ctx)
            reply.end_stream(payload)
        finally:
            if reply.closed and status == 200:
                status, code = 499, errors.CLIENT_DISCONNECTED
            await close_all(streams, status, code)
        return
    await _complete(ctx, reply, streams, choices, objs, obj_json, many, early_exit)


async def _complete(
    ctx: RequestContext,
    reply: Reply,
    streams: list[Stream],
    choices: Choices,
    objs: list[_Obj],
    obj_json: Any,
    many: bool,
    early_exit: bool,
) -> None:
    status, code = 200, None
    try:
        async for stream_no, event in merge(streams):
            ev = choices.on_event(stream_no, event)
            if ev is None:
                continue
            objs[ev.index].finish = ev.finish_reason
            if ev.logprobs is not None:
                objs[ev.index].lp.extend(ev.logprobs)
            if early_exit and choices.all_finished:
                break
        for ev in choices.finish_open():
            objs[ev.index].finish = ev.finish_reason
    except GrpcCallError as exc:
        err = http_error(exc)
        status, code = err.status, err.code
        raise err from exc
    finally:
        if reply.closed and status == 200:
            status, code = 499, errors.CLIENT_DISCONNECTED
        await close_all(streams, status, code)
    for index, out in enumerate(choices.outputs):
        objs[index].text = "".join(out.content)
    items = [obj_json(i) for i in range(len(objs))]
    body = orjson.dumps(items if many else items[0])
    ctx.usage_tail = orjson.dumps({"usage": choices.usage()})
    reply.send(200, body)
