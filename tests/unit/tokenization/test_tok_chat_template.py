"""Chat-template rendering: the real Qwen3 template, HF semantics, content adaptation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from herder.tokenization import (
    ChatTemplate,
    ChatTemplateError,
    Tokenizer,
    UnsupportedContentError,
    detect_content_format,
)
from herder.tokenization.chat_template import make_environment

IM_START, IM_END, NL = 151644, 151645, 198

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Météo actuelle d'une ville",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def qwen_template(qwen: Tokenizer) -> ChatTemplate:
    template = ChatTemplate.from_tokenizer(qwen)
    assert template is not None
    return template


def test_qwen3_system_user_no_thinking_token_ids(qwen: Tokenizer, qwen_template: ChatTemplate) -> None:
    system, user = "You are a helpful assistant.", "Tell me a joke."
    text = qwen_template.render(
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        add_generation_prompt=True,
        chat_template_kwargs={"enable_thinking": False},
    )
    ids = qwen.encode(text)
    assert len(ids) == 28
    assert ids[:3] == [IM_START, 8948, NL]  # <|im_start|> system \n
    user_tok, assistant_tok = qwen.token_to_id("user"), qwen.token_to_id("assistant")
    think, end_think = qwen.token_to_id("<think>"), qwen.token_to_id("</think>")
    expected = [
        *(IM_START, 8948, NL, *qwen.encode(system), IM_END, NL),
        *(IM_START, user_tok, NL, *qwen.encode(user), IM_END, NL),
        *(IM_START, assistant_tok, NL, think, *qwen.encode("\n\n"), end_think, *qwen.encode("\n\n")),
    ]
    assert ids == expected


def test_thinking_toggle(qwen_template: ChatTemplate) -> None:
    messages = [{"role": "user", "content": "2+2?"}]
    on = qwen_template.render(messages)
    off = qwen_template.render(messages, chat_template_kwargs={"enable_thinking": False})
    assert on.endswith("<|im_start|>assistant\n")
    assert off == on + "<think>\n\n</think>\n\n"
    assert qwen_template.thinking_key == "enable_thinking"
    assert not qwen_template.render(messages, add_generation_prompt=False).endswith("assistant\n")


def test_tools_block_is_json_lines_in_system_prompt(qwen_template: ChatTemplate) -> None:
    text = qwen_template.render(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    block = re.search(r"<tools>\n(.*?)\n</tools>", text, re.S)
    assert block is not None
    lines = block.group(1).split("\n")
    assert [json.loads(line) for line in lines] == [WEATHER_TOOL]
    assert "Météo" in block.group(1)  # tojson keeps non-ASCII (ensure_ascii=False)
    assert text.count("<|im_start|>system") == 1  # the system message is folded into the tools prompt


def test_multi_turn_tool_calls_and_reasoning(qwen_template: ChatTemplate) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Need the tool.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
    ]
    text = qwen_template.render(messages, tools=[WEATHER_TOOL])
    # Reasoning after the last user query is rendered inside <think>.
    assert "<|im_start|>assistant\n<think>\nNeed the tool.\n</think>\n\n" in text
    # The last <tool_call> block is the assistant's (the system prompt shows an example first).
    calls = re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text, re.S)
    assert len(calls) == 2
    assert json.loads(calls[-1]) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    # Consecutive tool results share one user turn.
    assert text.count("<tool_response>") == 2
    assert '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\nsunny' in text
    assert text.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_earlier_turn_reasoning_is_dropped(qwen_template: ChatTemplate) -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nsecret plan\n</think>\n\nHello!"},
        {"role": "user", "content": "Bye"},
    ]
    text = qwen_template.render(messages)
    assert "secret plan" not in text
    assert "<|im_start|>assistant\nHello!<|im_end|>" in text


def test_text_parts_joined_for_string_templates(qwen_template: ChatTemplate) -> None:
    assert qwen_template.content_format == "string"
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}]
    a = qwen_template.render([{"role": "user", "content": parts}])
    b = qwen_template.render([{"role": "user", "content": "Hello world"}])
    assert a == b


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_media_parts_are_unsupported(qwen_template: ChatTemplate, part: dict[str, object]) -> None:
    with pytest.raises(UnsupportedContentError, match=str(part["type"])):
        qwen_template.render([{"role": "user", "content": [{"type": "text", "text": "see"}, part]}])


def test_openai_format_template_gets_parts() -> None:
    src = (
        "{% for m in messages %}[{{ m.role }}]"
        "{% for p in m.content %}{{ p.type }}:{{ p.text }};{% endfor %}{% endfor %}"
    )
    t = ChatTemplate(src)
    assert t.content_format == "openai"
    out = t.render(
        [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    )
    assert out == "[user]text:a;text:b;"


@pytest.mark.parametrize(
    ("src", "fmt"),
    [
        ("{% for m in messages %}{{ m.content }}{% endfor %}", "string"),
        ("{% for m in messages %}{% for c in m['content'] %}{{ c.text }}{% endfor %}{% endfor %}", "openai"),
        (
            "{% for m in messages %}{% set c = m.content %}{% for x in c %}{{ x }}{% endfor %}{% endfor %}",
            "openai",
        ),
        ("{% for m in messages %}{{ m.content[0].text }}{% endfor %}", "openai"),
        ("{% for m in messages %}{% set c = m.content %}{{ c.strip() }}{% endfor %}", "string"),
    ],
)
def test_content_format_detection(src: str, fmt: str) -> None:
    assert detect_content_format(make_environment().parse(src)) == fmt


def test_continue_final_message(qwen_template: ChatTemplate) -> None:
    messages = [{"role": "user", "content": "Count to 3"}, {"role": "assistant", "content": "1, 2,"}]
    text = qwen_template.render(messages, continue_final_message=True, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n1, 2,")  # no <|im_end|>, no new turn
    # Trailing whitespace that the template keeps is kept too.
    spaced = qwen_template.render(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "1, 2, "}],
        continue_final_message=True,
    )
    assert spaced.endswith("</think>\n\n1, 2, ")
    # A template that trims content: the cut falls after the stripped text (transformers' rule).
    trimming = ChatTemplate("{% for m in messages %}<{{ m.content | trim }}>{% endfor %}")
    assert trimming.render([{"role": "user", "content": "go on "}], continue_final_message=True) == "<go on"
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% for m in messages %}[hidden]{% endfor %}").render(
            [{"role": "assistant", "content": "abc"}], continue_final_message=True
        )


def test_raise_exception_and_render_errors_are_template_errors() -> None:
    t = ChatTemplate(
        "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"
    )
    assert t.render([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(ChatTemplateError, match="first must be user"):
        t.render([{"role": "system", "content": "x"}])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages[0].content.upper( }}")
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages[5].content.strip() }}").render([{"role": "user", "content": "x"}])


def test_sandbox_blocks_unsafe_access() -> None:
    t = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ChatTemplateError):
        t.render([{"role": "user", "content": "x"}])


def test_globals_filters_and_special_tokens() -> None:
    t = ChatTemplate(
        "{{ bos_token }}{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ strftime_now('%Y') | length }}"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
        "{% generation %}G{% endgeneration %}{{ eos_token }}",
        special_tokens={"bos_token": "<s>", "eos_token": "</s>"},
    )
    msgs = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    out = t.render(msgs, chat_template_kwargs={"x": {"k": "é<>"}}, eos_token="<END>")
    assert out == '<s>{"k": "é<>"}|{\n  "k": "é<>"\n}|4oneG<END>'


def test_kwargs_cannot_override_messages() -> None:
    t = ChatTemplate("{{ messages | length }}{{ add_generation_prompt }}")
    out = t.render(
        [{"role": "user", "content": "x"}], chat_template_kwargs={"messages": [], "add_generation_prompt": 7}
    )
    assert out == "1True"


def test_named_templates_choose_tool_use_with_tools() -> None:
    t = ChatTemplate({"default": "D{{ tools is none }}", "tool_use": "T{{ tools | length }}"})
    assert t.render([{"role": "user", "content": "x"}]) == "DTrue"
    assert t.render([{"role": "user", "content": "x"}], tools=[WEATHER_TOOL]) == "T1"
    with pytest.raises(ChatTemplateError, match="default"):
        ChatTemplate({"rag": "R"}).render([{"role": "user", "content": "x"}])


def test_messages_are_not_mutated(qwen_template: ChatTemplate) -> None:
    tc: dict[str, Any] = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [tc]},
    ]
    qwen_template.render(messages)
    assert tc["function"]["arguments"] == '{"a": 1}'
