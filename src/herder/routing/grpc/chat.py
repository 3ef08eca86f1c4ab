"""POST /v1/chat/completions over gRPC: chat template -> token ids -> Generate -> OpenAI chat response.

Preparation follows SMG's stages (spec 6.4): tools filtered by tool_choice, the chat template rendered with
tools / documents / chat_template_kwargs (image parts are a 400), tokenized without special tokens through
the model's cached tokenizer (off the event loop for long prompts), and the constraint built from
response_format / regex / ebnf, or from tool_choice required / named (a JSON schema).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import orjson

from herder.parsers.reasoning import get_reasoning_parser
from herder.parsers.tools.registry import get_tool_parser
from herder.routing.context import RequestContext
from herder.routing.grpc.choices import ChoiceEvent, Choices
from herder.routing.grpc.client import GrpcCallError
from herder.routing.grpc.output import OutputConfig, chat_logprobs
from herder.routing.grpc.params import SamplingFields, bad, openai_sampling
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
from herder.routing.grpc.sampling import Constraint
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Reply
from herder.tokenization import ChatTemplateError, TokenizerEntry, UnsupportedContentError

SSE_HEADERS = [(b"cache-control", b"no-cache")]


@dataclass(slots=True)
class ChatPlan:
    """A prepared chat request."""

    prompt: str
    input_ids: list[int]
    sampling: SamplingFields
    output: OutputConfig


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise bad("'tools' must be an array", "tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise bad(
                f"'tools[{i}]' must be {{type: function, function: {{name, parameters}}}}", f"tools[{i}]"
            )
    return tools or None


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]] | None) -> tuple[str, str | None]:
    """("none" | "auto" | "required" | "named", the named function)."""
    choice = body.get("tool_choice")
    if choice is None:
        return ("auto" if tools else "none"), None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise bad("'tool_choice' must be none, auto, required or a named function", "tool_choice")
        if choice == "required" and not tools:
            raise bad("'tool_choice' is required but no tools were given", "tool_choice")
        return choice, None
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise bad(
            "'tool_choice' must be none, auto, required or {type: function, function: {name}}", "tool_choice"
        )
    if not tools or not any(t["function"]["name"] == name for t in tools):
        raise bad(f"'tool_choice' names function {name!r}, which is not in 'tools'", "tool_choice")
    return "named", name


def _params_schema(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool["function"].get("parameters")
    return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}


def _required_schema(tools: list[dict[str, Any]], parallel: bool) -> dict[str, Any]:
    items = [{"type": "object",
              "properties": {"name": {"type": "string", "enum": [t["function"]["name"]]},
                             "parameters": _params_schema(t)},
              "required": ["name", "parameters"]} for t in tools]  # fmt: skip
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def _needs_special_tokens(entry: TokenizerEntry, markers: list[str]) -> bool:
    """Parsers whose trigger tokens are special tokens need them kept in the decoded text."""
    special = entry.tokenizer.special_tokens
    return any(m in special for m in markers)


def _reasoning_opened(prompt: str, parser_name: str) -> bool:
    """The prompt ends inside a reasoning block the template opened (e.g. a prefilled `<think>`)."""
    parser = get_reasoning_parser(parser_name)
    start, end = getattr(parser, "start_tag", None), getattr(parser, "end_tag", None)
    if not start or not end:
        return False
    at = prompt.rfind(start)
    return at >= 0 and prompt.find(end, at) < 0


async def prepare_chat(router: GrpcRouter, ctx: RequestContext) -> ChatPlan:
    body = ctx.parsed
    state = router.state
    entry = state.tokenizer(ctx.model)
    template = entry.chat_template
    if template is None:
        raise bad("The model's tokenizer has no chat template; use /v1/completions or pass --chat-template")
    tools = _tools(body)
    mode, named = _tool_choice(body, tools)
    parallel = body.get("parallel_tool_calls") is not False
    render_tools = (
        None
        if mode == "none"
        else ([t for t in tools or () if t["function"]["name"] == named] if named else tools)
    )
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise bad("'chat_template_kwargs' must be an object", "chat_template_kwargs")
    documents = body.get("documents")
    if documents is not None and not isinstance(documents, list):
        raise bad("'documents' must be an array", "documents")
    continue_final = body.get("continue_final_message") is True
    try:
        prompt = template.render(body["messages"], tools=render_tools, documents=documents,
                                 add_generation_prompt=not continue_final, continue_final_message=continue_final,
                                 chat_template_kwargs=kwargs)  # fmt: skip
    except UnsupportedContentError as exc:
        raise bad(str(exc), "messages") from None
    except ChatTemplateError as exc:
        raise bad(str(exc), "messages") from None
    sampling = openai_sampling(body, chat=True)
    if mode in ("required", "named") and sampling.constraint is None:
        assert tools is not None
        schema = (
            _params_schema(next(t for t in tools if t["function"]["name"] == named))
            if named
            else _required_schema(tools, parallel)
        )
        sampling.constraint = Constraint("json_schema", json.dumps(schema, separators=(",", ":")))
    ids = await entry.cached.encode_async(prompt, False)
    reasoning_name, tool_name = state.parsers(ctx.model)
    if body.get("separate_reasoning") is False:
        reasoning_name = None
    tool_parser = tool_name if (mode == "auto" and render_tools) else None
    markers: list[str] = []
    if tool_parser is not None:
        markers.extend(type(get_tool_parser(tool_parser)).start_markers)
    if reasoning_name is not None:
        rp = get_reasoning_parser(reasoning_name)
        markers.extend(m for m in (getattr(rp, "start_tag", None), getattr(rp, "end_tag", None)) if m)
    skip = sampling.skip_special_tokens and not (markers and _needs_special_tokens(entry, markers))
    sampling.skip_special_tokens = skip
    meta = state.meta(ctx.model)
    eos = (
        [] if sampling.ignore_eos else list(dict.fromkeys(entry.tokenizer.eos_token_ids + meta.eos_token_ids))
    )
    output = OutputConfig(
        tokenizer=entry.tokenizer, skip_special_tokens=skip, stop=sampling.stop,
        stop_token_ids=eos + sampling.stop_token_ids, no_stop_trim=sampling.no_stop_trim,
        reasoning_parser=reasoning_name, stream_reasoning=body.get("stream_reasoning") is not False,
        reasoning_started=reasoning_name is not None and _reasoning_opened(prompt, reasoning_name),
        tool_parser=tool_parser, tools=render_tools, forced_tool=named,
        required_tools=mode == "required", parallel_tool_calls=parallel,
    )  # fmt: skip
    return ChatPlan(prompt, ids, sampling, output)


async def handle_chat(router: GrpcRouter, ctx: RequestContext, reply: Reply) -> None:
    plan = await prepare_chat(router, ctx)
    meta = router.state.meta(ctx.model)
    params = plan.sampling.params(
        engine_request_id(ctx),
        plan.input_ids,
        plan.prompt,
        stream=ctx.stream,
        context_length=meta.context_length,
    )
    choices = Choices([plan.output], params.n, stream=ctx.stream)
    choices.prompt_tokens[0] = len(plan.input_ids)
    model = ctx.model or meta.name
    stream = await router.open_stream(ctx, params, reply)
    if ctx.stream:
        await _stream_chat(router, ctx, reply, stream, choices, model)
    else:
        await _complete_chat(router, ctx, reply, stream, choices, model)


def _delta_json(ev: ChoiceEvent) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    d = ev.delta
    if d.reasoning:
        delta["reasoning_content"] = d.reasoning
    if d.content:
        delta["content"] = d.content
    if d.tools:
        delta["tool_calls"] = [t.json() for t in d.tools]
    return delta


async def _stream_chat(
    router: GrpcRouter, ctx: RequestContext, reply: Reply, stream: Stream, choices: Choices, model: str
) -> None:
    state = router.state
    want_logprobs = ctx.parsed.get("logprobs") is True
    texts = state.token_texts(state.tokenizer(ctx.model)) if want_logprobs else None
    opts = ctx.parsed.get("stream_options")
    include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
    head = b'data: {"id":%b,"object":"chat.completion.chunk","created":%d,"model":%b,"choices":[' % (
        orjson.dumps(ctx.request_id.decode("latin-1")),
        int(time.time()),
        orjson.dumps(model),
    )
    tail = b"]}\n\n"
    early_exit = stream.worker.runtime_type == "mlx"  # no stop strings on that wire: stop it ourselves
    status, code = 200, None
    try:
        reply.start_stream(200, SSE_HEADERS)
        await reply.write(b"".join(
            head + orjson.dumps({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                 "finish_reason": None}) + tail
            for i in range(len(choices.outputs))))  # fmt: skip
        async for _, event in merge([stream]):
            ev = choices.on_event(0, event)
            if ev is None:
                continue
            parts = _chunks(ev, head, tail, choices, texts, plan_logprobs=want_logprobs)
            if parts:
                if ev.delta:
                    mark_first_token(ctx, router.hooks)
                await reply.write(parts)
            if early_exit and choices.all_finished:
                break
        out = [_chunks(ev, head, tail, choices, None, plan_logprobs=False) for ev in choices.finish_open()]
        usage = orjson.dumps(choices.usage())
        ctx.usage_tail = usage
        if include_usage:
            out.append(head + b'],"usage":' + usage + b"}\n\n")
        out.append(SSE_DONE)
        reply.end_stream(b"".join(out))
    except (HttpError, Exception) as exc:
        if reply.closed:
            raise
        payload, status, code = stream_error(exc, ctx)
        reply.end_stream(payload)
    finally:
        if reply.closed and status == 200:
            status, code = 499, errors.CLIENT_DISCONNECTED
        await close_all([stream], status, code)


def _chunks(
    ev: ChoiceEvent, head: bytes, tail: bytes, choices: Choices, texts: Any, *, plan_logprobs: bool
) -> bytes:
    """The SSE events one ChoiceEvent produces: a delta (if any) and the finish chunk (if finished)."""
    out = b""
    delta = _delta_json(ev)
    logprobs = chat_logprobs(ev.logprobs, texts) if plan_logprobs and texts is not None else None
    if delta or logprobs is not None:
        out = (
            head
            + orjson.dumps({"index": ev.index, "delta": delta, "logprobs": logprobs, "finish_reason": None})
            + tail
        )
    if ev.finish_reason is not None:
        fin: dict[str, Any] = {
            "index": ev.index,
            "delta": {},
            "logprobs": None,
            "finish_reason": ev.finish_reason,
        }
        matched = choices.matched(ev.index)
        if matched is not None:
            fin["matched_stop"] = matched
        out += head + orjson.dumps(fin) + tail
    return out


async def _complete_chat(
    router: GrpcRouter, ctx: RequestContext, reply: Reply, stream: Stream, choices: Choices, model: str
) -> None:
    state = router.state
    want_logprobs = ctx.parsed.get("logprobs") is True
    texts = state.token_texts(state.tokenizer(ctx.model)) if want_logprobs else None
    finish: dict[int, str] = {}
    logprobs: dict[int, Any] = {}
    status, code = 200, None
    try:
        async for _, event in merge([stream]):
            ev = choices.on_event(0, event)
            if ev is None:
                continue
            if ev.finish_reason is not None:
                finish[ev.index] = ev.finish_reason
            if texts is not None and ev.logprobs is not None:
                logprobs[ev.index] = chat_logprobs(ev.logprobs, texts)
            if choices.all_finished and stream.worker.runtime_type == "mlx":
                break
        for ev in choices.finish_open():
            finish[ev.index] = ev.finish_reason or "stop"
    except GrpcCallError as exc:
        err = http_error(exc, stream.worker)
        status, code = err.status, err.code
        raise err from exc
    finally:
        if reply.closed and status == 200:
            status, code = 499, errors.CLIENT_DISCONNECTED
        await close_all([stream], status, code)
    out_choices = []
    for index, out in enumerate(choices.outputs):
        message: dict[str, Any] = {"role": "assistant", "content": "".join(out.content) or None}
        if out.reasoning:
            message["reasoning_content"] = "".join(out.reasoning)
        calls = out.message_tool_calls()
        if calls:
            message["tool_calls"] = calls
        item: dict[str, Any] = {
            "index": index,
            "message": message,
            "logprobs": logprobs.get(index),
            "finish_reason": finish.get(index, "stop"),
        }
        if out.matched is not None:
            item["matched_stop"] = out.matched
        out_choices.append(item)
    usage = choices.usage()
    body = orjson.dumps(
        {
            "id": ctx.request_id.decode("latin-1"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": out_choices,
            "usage": usage,
        }
    )
    ctx.usage_tail = body
    reply.send(200, body)
