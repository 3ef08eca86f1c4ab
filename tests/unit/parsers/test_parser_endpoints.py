"""Pure cores of /parse/reasoning and /parse/function_call (no HTTP)."""

from __future__ import annotations

import json

import pytest

from herder.parsers.endpoints import parse_reasoning_request, parse_tool_request
from herder.parsers.reasoning import reasoning_parser_names

# --------------------------------------------------------------------------- reasoning

# One realistic output per reasoning parser, with the hand-written split (reasoning, normal).
REASONING_SAMPLES: dict[str, tuple[str, str, str]] = {
    "base": ("<think>\nplan: add 2+2\n</think>\n\n4", "plan: add 2+2", "4"),
    "passthrough": ("<think>x</think> 4", "", "<think>x</think> 4"),
    "deepseek_r1": ("Hmm, 2+2 is 4.\n</think>\n\nThe answer is 4.", "Hmm, 2+2 is 4.", "The answer is 4."),
    "deepseek_v31": ("<think>2+2=4</think>Four.", "2+2=4", "Four."),
    "qwen3": ("<think>\n用户问 2+2。\n</think>\n\n等于 4。", "用户问 2+2。", "等于 4。"),
    "qwen3_thinking": ("Simple sum 🙂\n</think>\n\n4", "Simple sum 🙂", "4"),
    "glm45": ("<think>sum</think>\n4", "sum", "4"),
    "step3": ("sum it</think>4", "sum it", "4"),
    "minimax": ("<think>\nsum it\n</think>\n4", "sum it", "4"),
    "kimi": ("◁think▷sum◁/think▷4", "sum", "4"),
    "kimi_k25": ("<think>sum</think>4", "sum", "4"),
    "kimi_thinking": ("sum</think>4", "sum", "4"),
    "kimi_k3": (
        "<|open|>think<|sep|>sum<|close|>think<|sep|><|open|>response<|sep|>4<|close|>response<|sep|>",
        "sum",
        "4",
    ),
    "cohere_cmd": ("<|START_THINKING|>sum<|END_THINKING|>4", "sum", "4"),
    "nano_v3": ("<think>\nsum\n</think>\n4", "sum", "4"),
    "inkling": (
        "<|message_model|><|content_thinking|>sum<|end_message|>"
        "<|message_model|><|content_text|>4<|end_message|><|content_model_end_sampling|>",
        "sum",
        "4",
    ),
}


def _chunks(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_every_reasoning_parser_has_a_sample() -> None:
    assert set(REASONING_SAMPLES) == set(reasoning_parser_names())


@pytest.mark.parametrize("name", sorted(REASONING_SAMPLES))
@pytest.mark.parametrize("field", ["reasoning_parser", "parser"])
def test_reasoning_with_text(name: str, field: str) -> None:
    text, reasoning, normal = REASONING_SAMPLES[name]
    status, body = parse_reasoning_request({"text": text, field: name})
    assert status == 200
    assert body == {"normal_text": normal, "reasoning_text": reasoning, "success": True}


@pytest.mark.parametrize("name", sorted(REASONING_SAMPLES))
@pytest.mark.parametrize("stream_reasoning", [True, False, None])
def test_reasoning_with_chunks(name: str, stream_reasoning: bool | None) -> None:
    text, reasoning, normal = REASONING_SAMPLES[name]
    req: dict[str, object] = {"chunks": _chunks(text), "reasoning_parser": name}
    if stream_reasoning is not None:
        req["stream_reasoning"] = stream_reasoning
    status, body = parse_reasoning_request(req)
    assert status == 200
    assert body == {"normal_text": normal, "reasoning_text": reasoning, "success": True}


def test_reasoning_started_flag() -> None:
    status, body = parse_reasoning_request(
        {"text": "r</think>n", "reasoning_parser": "qwen3", "reasoning_started": True}
    )
    assert (status, body["reasoning_text"], body["normal_text"]) == (200, "r", "n")


def test_reasoning_parser_detected_from_model() -> None:
    status, body = parse_reasoning_request({"text": "r</think>n", "model": "deepseek-ai/DeepSeek-R1"})
    assert (status, body["reasoning_text"], body["normal_text"]) == (200, "r", "n")
    status, body = parse_reasoning_request({"text": "<think>r</think>n", "model": "unknown-model"})
    assert (status, body["reasoning_text"], body["normal_text"]) == (200, "", "<think>r</think>n")


def test_empty_chunks_and_empty_text() -> None:
    assert parse_reasoning_request({"chunks": [], "reasoning_parser": "qwen3"})[1]["normal_text"] == ""
    assert parse_reasoning_request({"text": "", "reasoning_parser": "qwen3"})[0] == 200


def _assert_error(resp: tuple[int, dict], code: str, param: str | None = None) -> str:
    status, body = resp
    assert status == 400
    err = body["error"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    assert isinstance(err["message"], str) and err["message"]
    return err["message"]


def test_reasoning_unknown_parser_names_valid_ones() -> None:
    msg = _assert_error(
        parse_reasoning_request({"text": "x", "reasoning_parser": "nope"}),
        "invalid_parser",
        "reasoning_parser",
    )
    assert "'nope'" in msg
    for name in reasoning_parser_names():
        assert name in msg


def test_reasoning_missing_parser() -> None:
    msg = _assert_error(parse_reasoning_request({"text": "x"}), "invalid_parser", "reasoning_parser")
    assert "qwen3" in msg


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reasoning_parser": "qwen3"}, "text"),
        ({"text": 5, "reasoning_parser": "qwen3"}, "text"),
        ({"chunks": "abc", "reasoning_parser": "qwen3"}, "chunks"),
        ({"chunks": ["a", 1], "reasoning_parser": "qwen3"}, "chunks"),
        ({"text": "a", "chunks": ["a"], "reasoning_parser": "qwen3"}, "text"),
        ({"text": "a", "reasoning_parser": 3}, "reasoning_parser"),
        ({"text": "a", "reasoning_parser": ""}, "reasoning_parser"),
        ({"text": "a", "reasoning_parser": "qwen3", "stream_reasoning": "yes"}, "stream_reasoning"),
        ({"text": "a", "reasoning_parser": "qwen3", "reasoning_started": 1}, "reasoning_started"),
    ],
)
def test_reasoning_bad_requests(body: dict, param: str) -> None:
    _assert_error(parse_reasoning_request(body), "invalid_request", param)


@pytest.mark.parametrize("body", [None, [], "text", 3])
def test_body_must_be_an_object(body: object) -> None:
    _assert_error(parse_reasoning_request(body), "invalid_request")
    _assert_error(parse_tool_request(body), "invalid_request")


def test_reasoning_overflow_is_a_client_error() -> None:
    from herder.parsers.reasoning import MAX_BUFFER_SIZE

    _assert_error(
        parse_reasoning_request({"text": "x" * (MAX_BUFFER_SIZE + 1), "reasoning_parser": "qwen3"}),
        "invalid_request",
    )


# --------------------------------------------------------------------------- tools


def _tool_names() -> list[str]:
    try:
        from herder.parsers.tools.registry import tool_parser_names
    except ImportError:
        return []
    return sorted(tool_parser_names())


# One call get_weather(city="Paris") in each format of spec 8.1, and the normal text around it.
_Q_XML = (
    "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "</function>\n</tool_call>"
)
TOOL_SAMPLES: dict[str, tuple[str, str]] = {
    "json": ('{"name": "get_weather", "arguments": {"city": "Paris"}}', ""),
    "mistral": ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]', ""),
    "qwen": (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "Let me check.",
    ),
    "qwen_xml": (_Q_XML, "Let me check."),
    "qwen_coder": (_Q_XML, "Let me check."),
    "pythonic": ('[get_weather(city="Paris")]', ""),
    "llama": ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', ""),
    "deepseek": (
        "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
        '```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "Let me check.",
    ),
    "deepseek31": (
        "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
        '{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "Let me check.",
    ),
    "deepseek32": (
        'Let me check.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_weather">\n'
        '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
        "</｜DSML｜function_calls>",
        "Let me check.",
    ),
    "deepseek_v4": (
        'Let me check.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n'
        '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
        "</｜DSML｜tool_calls>",
        "Let me check.",
    ),
    "glm45_moe": (
        "Let me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
        "Let me check.",
    ),
    "glm47_moe": (
        "Let me check.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
        "Let me check.",
    ),
    "step3": (
        "Let me check.<｜tool_calls_begin｜>\n<｜tool_call_begin｜>function<｜tool_sep｜>"
        '<steptml:invoke name="get_weather">\n<steptml:parameter name="city">Paris</steptml:parameter>\n'
        "</steptml:invoke><｜tool_call_end｜>\n<｜tool_calls_end｜>",
        "Let me check.",
    ),
    "kimik2": (
        "Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
        '<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>',
        "Let me check.",
    ),
    "kimi_k3": (
        'Let me check.<|open|>tools<|sep|><|open|>call tool="get_weather" index="0"<|sep|>'
        '<|open|>argument key="city" type="string"<|sep|>Paris<|close|>argument<|sep|>'
        "<|close|>call<|sep|><|close|>tools<|sep|>",
        "Let me check.",
    ),
    "minimax_m2": (
        'Let me check.\n<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="city">Paris'
        "</parameter>\n</invoke>\n</minimax:tool_call>",
        "Let me check.",
    ),
    "cohere": (
        "<|START_RESPONSE|>Let me check.<|END_RESPONSE|><|START_ACTION|>"
        '{"tool_name": "get_weather", "parameters": {"city": "Paris"}}<|END_ACTION|>',
        "Let me check.",
    ),
    "sarashina": (
        "Let me check.<|tool_calls|>[{'name': 'get_weather', 'arguments': {'city': 'Paris'}}]",
        "Let me check.",
    ),
    "inkling": (
        'Let me check.<|message_model|>get_weather<|content_invoke_tool_json|>{"name": "get_weather", '
        '"args": {"city": "Paris"}}<|end_message|>',
        "Let me check.",
    ),
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _check_call_body(body: dict, expected_normal: str) -> None:
    assert body["success"] is True
    assert body["normal_text"] == body["remaining_text"]
    # Whitespace between the text and the call region is the tool parser's business.
    assert body["normal_text"].strip() == expected_normal
    assert len(body["tool_calls"]) == 1
    call = body["tool_calls"][0]
    assert call["name"] == "get_weather"
    assert call["arguments"] == call["parameters"]
    assert json.loads(call["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize("name", _tool_names())
@pytest.mark.parametrize("with_tools", [False, True])
def test_tool_call_with_text_and_chunks(name: str, with_tools: bool) -> None:
    pytest.importorskip("herder.parsers.tools.registry")
    if name == "passthrough":
        pytest.skip("passthrough never extracts calls (covered below)")
    if name not in TOOL_SAMPLES:
        pytest.skip(f"no sample output for new tool parser {name!r} yet")
    text, normal = TOOL_SAMPLES[name]
    extra = {"tools": [WEATHER_TOOL]} if with_tools else {}
    status, one_shot = parse_tool_request({"text": text, "tool_call_parser": name, **extra})
    assert status == 200, one_shot
    _check_call_body(one_shot, normal)
    for size in (1, 4, 17):
        status, streamed = parse_tool_request({"chunks": _chunks(text, size), "parser": name, **extra})
        assert status == 200, streamed
        assert streamed == one_shot, f"chunk size {size}"


@pytest.mark.parametrize("name", _tool_names())
def test_tool_parser_plain_text_has_no_calls(name: str) -> None:
    pytest.importorskip("herder.parsers.tools.registry")
    text = "The weather in Paris is usually mild; no tool needed."
    for req in ({"text": text}, {"chunks": _chunks(text, 5)}):
        status, body = parse_tool_request({**req, "tool_call_parser": name})
        assert status == 200, body
        assert body == {"normal_text": text, "remaining_text": text, "tool_calls": [], "success": True}


def test_passthrough_tool_parser_keeps_markup() -> None:
    pytest.importorskip("herder.parsers.tools.registry")
    text = TOOL_SAMPLES["qwen"][0]
    status, body = parse_tool_request({"text": text, "tool_call_parser": "passthrough"})
    assert (status, body["normal_text"], body["tool_calls"]) == (200, text, [])


def test_every_tool_parser_name_has_a_sample() -> None:
    names = _tool_names()
    if not names:
        pytest.skip("tool registry not available")
    assert set(names) - {"passthrough"} <= set(TOOL_SAMPLES)


def test_tool_unknown_parser_names_valid_ones() -> None:
    names = _tool_names()
    if not names:
        pytest.skip("tool registry not available")
    msg = _assert_error(parse_tool_request({"text": "x", "tool_call_parser": "nope"}), "invalid_parser")
    for name in names:
        assert name in msg


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"tool_call_parser": "json"}, "invalid_request", "text"),
        ({"text": ["x"], "tool_call_parser": "json"}, "invalid_request", "text"),
        ({"chunks": [None], "tool_call_parser": "json"}, "invalid_request", "chunks"),
        ({"text": "x", "tool_call_parser": "json", "tools": {"a": 1}}, "invalid_request", "tools"),
        ({"text": "x", "tool_call_parser": "json", "tools": ["a"]}, "invalid_request", "tools"),
        ({"text": "x", "tool_call_parser": 7}, "invalid_request", "tool_call_parser"),
        ({"text": "x"}, "invalid_parser", "tool_call_parser"),
    ],
)
def test_tool_bad_requests(body: dict, code: str, param: str) -> None:
    if not _tool_names():
        pytest.skip("tool registry not available")
    _assert_error(parse_tool_request(body), code, param)


@pytest.mark.parametrize(
    ("reasoning_parser", "tool_parser", "text"),
    [
        (
            "inkling",
            "inkling",
            "<|message_model|><|content_thinking|>need the weather<|end_message|>"
            '<|message_model|>get_weather<|content_invoke_tool_json|>{"name": "get_weather", '
            '"args": {"city": "Paris"}}<|end_message|><|content_model_end_sampling|>',
        ),
        (
            "kimi_k3",
            "kimi_k3",
            "<|open|>think<|sep|>need the weather<|close|>think<|sep|>"
            '<|open|>tools<|sep|><|open|>call tool="get_weather" index="0"<|sep|>'
            '<|open|>argument key="city" type="string"<|sep|>Paris<|close|>argument<|sep|>'
            "<|close|>call<|sep|><|close|>tools<|sep|><|close|>message<|sep|>",
        ),
        (
            "qwen3",
            "qwen",
            '<think>\nneed the weather\n</think>\n\n<tool_call>\n{"name": "get_weather", '
            '"arguments": {"city": "Paris"}}\n</tool_call>',
        ),
    ],
)
def test_reasoning_output_feeds_the_tool_parser(reasoning_parser: str, tool_parser: str, text: str) -> None:
    """The gateway runs the reasoning parser first, then the tool parser on the normal text."""
    if tool_parser not in _tool_names():
        pytest.skip("tool registry not available")
    status, r = parse_reasoning_request({"chunks": _chunks(text, 2), "reasoning_parser": reasoning_parser})
    assert status == 200 and r["reasoning_text"] == "need the weather"
    status, t = parse_tool_request({"text": r["normal_text"], "tool_call_parser": tool_parser})
    assert status == 200
    _check_call_body(t, "")


def test_tool_registry_unavailable_is_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "herder.parsers.tools.registry", None)  # import now fails
    status, body = parse_tool_request({"text": "x", "tool_call_parser": "json"})
    assert status == 503
    assert body["error"]["code"] == "tool_parsers_unavailable"
    # The reasoning endpoint does not depend on the tool parsers.
    assert parse_reasoning_request({"text": "x", "reasoning_parser": "qwen3"})[0] == 200
