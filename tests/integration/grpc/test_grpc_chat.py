"""Chat completions through herder's gRPC path (real Qwen3 tokenizer and chat template, simulated engine,
the official openai SDK as client)."""

from __future__ import annotations

import json
from typing import Any

import openai
from tokenizers import Tokenizer

from herder.server.app import Gateway
from herder.sim.grpc_worker import SimGrpcWorker, default_tokenizer_dir, load_tokenizer
from tests.integration.grpc.grpc_helpers import MODEL, total_load

Env = tuple[Gateway, SimGrpcWorker, openai.AsyncOpenAI]
USER = [{"role": "user", "content": "Say something."}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _tok() -> Tokenizer:
    return load_tokenizer(default_tokenizer_dir()).tok


async def _stream_text(client: openai.AsyncOpenAI, **kw: Any) -> tuple[list[Any], dict[int, str]]:
    stream = await client.chat.completions.create(model=MODEL, stream=True, **kw)
    chunks = [c async for c in stream]
    texts: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
    return chunks, texts


async def test_chat_non_streaming_and_streaming_return_the_engine_text(grpc_env: Env) -> None:
    gw, worker, client = grpc_env
    text = "Hello there, this is a scripted answer."
    worker.script(text)
    resp = await client.chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content == text
    assert resp.choices[0].finish_reason == "stop"
    assert (
        resp.usage is not None and resp.usage.completion_tokens == len(_tok().encode(text).ids) + 1
    )  # + EOS
    sent = worker.received[-1]
    assert (
        list(sent.tokenized.input_ids)
        == _tok().encode(sent.tokenized.original_text, add_special_tokens=False).ids
    )
    assert resp.usage.prompt_tokens == len(sent.tokenized.input_ids)

    worker.script(text)
    chunks, texts = await _stream_text(client, messages=USER, stream_options={"include_usage": True})
    assert texts[0] == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    assert total_load(gw) == 0


async def test_n_2_multiplexes_choices(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script(["first choice", "second choice"])
    resp = await client.chat.completions.create(model=MODEL, messages=USER, n=2)
    assert sorted((c.index, c.message.content) for c in resp.choices) == [
        (0, "first choice"),
        (1, "second choice"),
    ]
    worker.script(["first choice", "second choice"])
    _, texts = await _stream_text(client, messages=USER, n=2)
    assert texts == {0: "first choice", 1: "second choice"}
    assert worker.received[-1].sampling_params.n == 2


async def test_stop_sequence_spanning_tokens_is_never_leaked(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    text = "Alpha beta STOPWORD gamma delta"
    stop = "a STOPW"
    ids = _tok().encode(text, add_special_tokens=False).ids
    pieces = [_tok().decode([i]) for i in ids]
    # Precondition: the stop string really spans several tokens.
    assert not any(stop in p for p in pieces)
    worker.script(text)
    resp = await client.chat.completions.create(model=MODEL, messages=USER, stop=[stop])
    assert resp.choices[0].message.content == "Alpha bet"
    assert resp.choices[0].finish_reason == "stop"
    worker.script(text)
    chunks, texts = await _stream_text(client, messages=USER, stop=stop)
    assert texts[0] == "Alpha bet"
    assert all("STOP" not in (ch.delta.content or "") for c in chunks for ch in c.choices)
    assert list(worker.received[-1].sampling_params.stop) == [stop]
    # SGLang's no_stop_trim keeps the stop string.
    worker.script(text)
    resp = await client.chat.completions.create(
        model=MODEL, messages=USER, stop=[stop], extra_body={"no_stop_trim": True}
    )
    assert resp.choices[0].message.content == "Alpha beta STOPW"


async def test_multibyte_characters_split_between_tokens(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    text = "Llama 🦙 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ok"
    tok = _tok()
    ids = tok.encode(text, add_special_tokens=False).ids
    # Precondition: at least one token alone decodes to a partial (replacement) character.
    assert any("\ufffd" in tok.decode([i]) for i in ids)
    worker.script(text)
    chunks, texts = await _stream_text(client, messages=USER)
    assert texts[0] == text
    assert not any("\ufffd" in (ch.delta.content or "") for c in chunks for ch in c.choices)
    worker.script(text)
    resp = await client.chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content == text


THINK_AND_CALL = (
    "<think>\nThe user wants the weather. I will call the tool.\n</think>\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
)


async def test_reasoning_and_tool_call_non_streaming(grpc_env: Env) -> None:
    gw, worker, client = grpc_env
    worker.script(THINK_AND_CALL)
    resp = await client.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert (
        getattr(choice.message, "reasoning_content", None)
        == "The user wants the weather. I will call the tool."
    )
    assert not choice.message.content
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("call_") and len(calls[0].id) == 5 + 24
    # The template saw the tools.
    assert "get_weather" in worker.received[-1].tokenized.original_text
    assert total_load(gw) == 0


async def test_reasoning_and_tool_call_streaming(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script(THINK_AND_CALL)
    stream = await client.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS, stream=True)
    reasoning, content, names, args, ids = "", "", [], "", []
    finish = None
    async for c in stream:
        for ch in c.choices:
            reasoning += getattr(ch.delta, "reasoning_content", None) or ""
            content += ch.delta.content or ""
            for tc in ch.delta.tool_calls or []:
                assert tc.index == 0
                if tc.function and tc.function.name:
                    names.append(tc.function.name)
                if tc.id:
                    ids.append(tc.id)
                args += (tc.function.arguments if tc.function else "") or ""
            finish = ch.finish_reason or finish
    assert reasoning == "The user wants the weather. I will call the tool."
    assert content.strip() == ""
    assert names == ["get_weather"] and len(ids) == 1
    assert json.loads(args) == {"city": "Paris"}
    assert finish == "tool_calls"


async def test_separate_reasoning_false_keeps_think_text(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script("<think>hmm</think>\n\nAnswer.")
    resp = await client.chat.completions.create(
        model=MODEL, messages=USER, extra_body={"separate_reasoning": False}
    )
    assert resp.choices[0].message.content == "<think>hmm</think>\n\nAnswer."


async def test_prompt_ending_inside_think_block_starts_in_reasoning(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script(" about it.\n</think>\n\nFinal answer.")
    messages = [*USER, {"role": "assistant", "content": "<think>\nLet me think"}]
    resp = await client.chat.completions.create(
        model=MODEL, messages=messages, extra_body={"continue_final_message": True}
    )
    assert worker.received[-1].tokenized.original_text.endswith("<think>\nLet me think")
    assert resp.choices[0].message.content == "Final answer."
    assert getattr(resp.choices[0].message, "reasoning_content", None) == "about it."


async def test_enable_thinking_false_reaches_the_template(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script("Plain.")
    resp = await client.chat.completions.create(
        model=MODEL, messages=USER, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )
    assert "<think>\n\n</think>" in worker.received[-1].tokenized.original_text
    assert resp.choices[0].message.content == "Plain."


async def test_sampling_parameters_are_mapped_explicitly(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script("x")
    await client.chat.completions.create(model=MODEL, messages=USER)
    sp = worker.received[-1].sampling_params
    prompt_len = len(worker.received[-1].tokenized.input_ids)
    assert (sp.temperature, sp.top_p, sp.top_k, sp.min_p, sp.repetition_penalty) == (1.0, 1.0, -1, 0.0, 1.0)
    assert sp.max_new_tokens == 8192 - prompt_len  # context length minus prompt
    assert sp.skip_special_tokens is True
    worker.script("x")
    await client.chat.completions.create(
        model=MODEL, messages=USER, temperature=0.25, top_p=0.5, max_tokens=7, seed=42, frequency_penalty=0.5,
        presence_penalty=-0.5, stop=["zz"],
        extra_body={"top_k": 20, "min_p": 0.1, "repetition_penalty": 1.2, "stop_token_ids": [13],
                    "min_tokens": 2, "ignore_eos": True},
    )  # fmt: skip
    sent = worker.received[-1]
    sp = sent.sampling_params
    assert abs(sp.temperature - 0.25) < 1e-6 and abs(sp.top_p - 0.5) < 1e-6 and sp.top_k == 20
    assert abs(sp.min_p - 0.1) < 1e-6 and abs(sp.repetition_penalty - 1.2) < 1e-6
    assert abs(sp.frequency_penalty - 0.5) < 1e-6 and abs(sp.presence_penalty + 0.5) < 1e-6
    assert sp.max_new_tokens == 7 and sp.min_new_tokens == 2 and sp.ignore_eos
    assert list(sp.stop) == ["zz"] and list(sp.stop_token_ids) == [13]
    assert sp.custom_params["sampling_seed"] == 42


async def test_logprobs(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    worker.script("one two three")
    resp = await client.chat.completions.create(model=MODEL, messages=USER, logprobs=True, top_logprobs=2)
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.content
    assert "".join(t.token for t in lp.content).startswith("one two three")
    assert all(len(t.top_logprobs) == 2 and t.logprob < 0 for t in lp.content)
    assert worker.received[-1].return_logprob and worker.received[-1].top_logprobs_num == 2


async def test_constraints_from_response_format_and_tool_choice(grpc_env: Env) -> None:
    _, worker, client = grpc_env
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    worker.script('{"a": 1}')
    resp = await client.chat.completions.create(
        model=MODEL,
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert json.loads(worker.received[-1].sampling_params.json_schema) == schema
    assert resp.choices[0].message.content == '{"a": 1}'

    worker.script('{"x": 1}')
    await client.chat.completions.create(model=MODEL, messages=USER, response_format={"type": "json_object"})
    assert json.loads(worker.received[-1].sampling_params.json_schema) == {"type": "object"}

    worker.script("abc")
    await client.chat.completions.create(model=MODEL, messages=USER, extra_body={"regex": "[a-c]+"})
    assert worker.received[-1].sampling_params.regex == "[a-c]+"

    # tool_choice required: a JSON-array schema; the array the engine returns becomes tool calls.
    worker.script('[{"name": "get_weather", "parameters": {"city": "Rome"}}]')
    resp = await client.chat.completions.create(
        model=MODEL, messages=USER, tools=TOOLS, tool_choice="required"
    )
    constraint = json.loads(worker.received[-1].sampling_params.json_schema)
    assert constraint["type"] == "array" and constraint["minItems"] == 1
    calls = resp.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Rome"})
    ]
    assert resp.choices[0].finish_reason == "tool_calls"

    # A named function: its parameters schema; the output is its arguments.
    worker.script('{"city": "Oslo"}')
    resp = await client.chat.completions.create(
        model=MODEL,
        messages=USER,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert json.loads(worker.received[-1].sampling_params.json_schema) == TOOLS[0]["function"]["parameters"]
    calls = resp.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"})
    ]

    # tool_choice none: the template does not see the tools and nothing is parsed.
    worker.script('<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>')
    resp = await client.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS, tool_choice="none")
    assert "get_weather" not in worker.received[-1].tokenized.original_text
    assert not resp.choices[0].message.tool_calls
