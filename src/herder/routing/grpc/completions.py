"""POST /v1/completions over gRPC: one backend request per prompt (batched prompts fan out), choice indexes
merged as prompt_index * n + choice_index (OpenAI's order)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from herder.routing.context import RequestContext
from herder.routing.grpc.chat import SSE_HEADERS
from herder.routing.grpc.choices import ChoiceEvent, Choices
from herder.routing.grpc.client import GrpcCallError
from herder.routing.grpc.output import OutputConfig, TokenTexts, completion_logprobs
from herder.routing.grpc.params import bad, openai_sampling
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
from herder.server import errors
from herder.server.http import Reply
from herder.tokenization import TokenizerEntry

MAX_BATCH = 2048


async def prompts_of(entry: TokenizerEntry, value: Any, name: str) -> list[tuple[str, list[int]]]:
    """(text, ids) per prompt of a str / [str] / [int] / [[int]] field; text is "" for token prompts."""
    if isinstance(value, str):
        return [(value, await entry.cached.encode_async(value, True))]
    if not isinstance(value, list) or not value:
        raise bad(f"'{name}' must be a string, an array of strings, or token ids", name)
    if len(value) > MAX_BATCH:
        raise bad(f"'{name}' has more than {MAX_BATCH} prompts", name)
    first = value[0]
    if isinstance(first, int) and not isinstance(first, bool):
        return [("", _ids(value, name))]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item, await entry.cached.encode_async(item, True)))
        elif isinstance(item, list):
            out.append(("", _ids(item, name)))
        else:
            raise bad(f"'{name}' must be a string, an array of strings, or token ids", name)
    return out


def _ids(value: list[Any], name: str) -> list[int]:
    if not value or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        raise bad(f"'{name}' token ids must be a non-empty array of non-negative integers", name)
    return value


async def handle_completions(router: GrpcRouter, ctx: RequestContext, reply: Reply) -> None:
    body = ctx.parsed
    state = router.state
    entry = state.tokenizer(ctx.model)
    prompts = await prompts_of(entry, body.get("prompt"), "prompt")
    sampling = openai_sampling(body, chat=False)
    meta = state.meta(ctx.model)
    eos = (
        [] if sampling.ignore_eos else list(dict.fromkeys(entry.tokenizer.eos_token_ids + meta.eos_token_ids))
    )
    cfg = OutputConfig(tokenizer=entry.tokenizer, skip_special_tokens=sampling.skip_special_tokens,
                       stop=sampling.stop, stop_token_ids=eos + sampling.stop_token_ids,
                       no_stop_trim=sampling.no_stop_trim)  # fmt: skip
    params = [sampling.params(engine_request_id(ctx, i if len(prompts) > 1 else None), ids, text,
                              stream=ctx.stream, context_length=meta.context_length)
              for i, (text, ids) in enumerate(prompts)]  # fmt: skip
    choices = Choices([cfg] * len(prompts), sampling.n, stream=ctx.stream)
    for i, (_, ids) in enumerate(prompts):
        choices.prompt_tokens[i] = len(ids)
    echo = body.get("echo") is True
    echoes = [(text or entry.tokenizer.decode(ids)) if echo else "" for text, ids in prompts]
    texts = state.token_texts(entry) if sampling.logprobs else None
    streams = await router.open_streams(ctx, params, reply)
    model = ctx.model or meta.name
    if ctx.stream:
        await _stream(router, ctx, reply, streams, choices, model, echoes, texts)
    else:
        await _complete(ctx, reply, streams, choices, model, echoes, texts)


def _choice_json(ev: ChoiceEvent, choices: Choices, texts: TokenTexts | None, prefix: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "index": ev.index,
        "text": prefix + ev.delta.content,
        "logprobs": completion_logprobs(ev.logprobs, texts) if texts is not None else None,
        "finish_reason": ev.finish_reason,
    }
    if ev.finish_reason is not None:
        matched = choices.matched(ev.index)
        if matched is not None:
            item["matched_stop"] = matched
    return item


async def _stream(
    router: GrpcRouter,
    ctx: RequestContext,
    reply: Reply,
    streams: list[Stream],
    choices: Choices,
    model: str,
    echoes: list[str],
    texts: TokenTexts | None,
) -> None:
    opts = ctx.parsed.get("stream_options")
    include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
    head = b'data: {"id":%b,"object":"text_completion","created":%d,"model":%b,"choices":[' % (
        orjson.dumps(ctx.request_id.decode("latin-1")),
        int(time.time()),
        orjson.dumps(model),
    )
    tail = b"]}\n\n"
    pending_echo = [echoes[i // choices.n] for i in range(len(choices.outputs))]
    early_exit = any(s.worker.runtime_type == "mlx" for s in streams)
    status, code = 200, None
    try:
        reply.start_stream(200, SSE_HEADERS)
        async for stream_no, event in merge(streams):
            ev = choices.on_event(stream_no, event)
            if ev is None:
                continue
            prefix, pending_echo[ev.index] = pending_echo[ev.index], ""
            mark_first_token(ctx, router.hooks)
            await reply.write(head + orjson.dumps(_choice_json(ev, choices, texts, prefix)) + tail)
            if early_exit and choices.all_finished:
                break
        out = [
            head + orjson.dumps(_choice_json(ev, choices, None, "")) + tail for ev in choices.finish_open()
        ]
        usage = orjson.dumps(choices.usage())
        ctx.usage_tail = usage
        if include_usage:
            out.append(head + b'],"usage":' + usage + b"}\n\n")
        out.append(SSE_DONE)
        reply.end_stream(b"".join(out))
    except Exception as exc:
        if reply.closed:
            raise
        payload, status, code = stream_error(exc, ctx)
        reply.end_stream(payload)
    finally:
        if reply.closed and status == 200:
            status, code = 499, errors.CLIENT_DISCONNECTED
        await close_all(streams, status, code)


async def _complete(
    ctx: RequestContext,
    reply: Reply,
    streams: list[Stream],
    choices: Choices,
    model: str,
    echoes: list[str],
    texts: TokenTexts | None,
) -> None:
    finish: dict[int, str] = {}
    logprobs: dict[int, Any] = {}
    status, code = 200, None
    try:
        async for stream_no, event in merge(streams):
            ev = choices.on_event(stream_no, event)
            if ev is None:
                continue
            if ev.finish_reason is not None:
                finish[ev.index] = ev.finish_reason
            if texts is not None and ev.logprobs is not None:
                logprobs[ev.index] = completion_logprobs(ev.logprobs, texts)
            if choices.all_finished and any(s.worker.runtime_type == "mlx" for s in streams):
                break
        for ev in choices.finish_open():
            finish[ev.index] = ev.finish_reason or "stop"
    except GrpcCallError as exc:
        err = http_error(exc)
        status, code = err.status, err.code
        raise err from exc
    finally:
        if reply.closed and status == 200:
            status, code = 499, errors.CLIENT_DISCONNECTED
        await close_all(streams, status, code)
    items = []
    for index, out in enumerate(choices.outputs):
        item: dict[str, Any] = {
            "index": index,
            "text": echoes[index // choices.n] + "".join(out.content),
            "logprobs": logprobs.get(index),
            "finish_reason": finish.get(index, "stop"),
        }
        if out.matched is not None:
            item["matched_stop"] = out.matched
        items.append(item)
    body = orjson.dumps(
        {
            "id": ctx.request_id.decode("latin-1"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": items,
            "usage": choices.usage(),
        }
    )
    ctx.usage_tail = body
    reply.send(200, body)
