"""Tool-parser registry: names, aliases, lazy loading and model-id auto-detection."""

from __future__ import annotations

import importlib.util

import pytest

from herder.parsers.tools.base import ToolParser
from herder.parsers.tools.registry import detect_tool_parser, get_tool_parser, tool_parser_names

MINE = [
    "json",
    "mistral",
    "qwen",
    "qwen_xml",
    "pythonic",
    "llama",
    "cohere",
    "sarashina",
    "inkling",
    "passthrough",
]
OTHERS = {
    "deepseek": "deepseek",
    "deepseek31": "deepseek",
    "deepseek32": "deepseek_dsml",
    "deepseek_v4": "deepseek_dsml",
    "glm45_moe": "glm",
    "glm47_moe": "glm",
    "step3": "step3",
    "kimik2": "kimi",
    "kimi_k3": "kimi",
    "minimax_m2": "minimax",
}


def test_names() -> None:
    names = tool_parser_names()
    assert len(names) == 21
    assert set(names) == {*MINE, *OTHERS, "qwen_coder"}


@pytest.mark.parametrize("name", MINE)
def test_get_returns_fresh_instances_with_the_right_name(name: str) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    a, b = get_tool_parser(name, tools), get_tool_parser(name)
    assert isinstance(a, ToolParser)
    assert a.name == name == b.name
    assert a is not b
    assert a.tools == {"f": {"type": "object"}} and b.tools == {}


def test_alias() -> None:
    assert get_tool_parser("qwen_coder").name == "qwen_xml"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown tool parser 'nope'") as exc:
        get_tool_parser("nope")
    for n in ("qwen_coder", "json", "kimik2", "passthrough"):
        assert n in str(exc.value)


@pytest.mark.parametrize(("name", "module"), sorted(OTHERS.items()))
def test_other_families_load_lazily_or_fail_clearly(name: str, module: str) -> None:
    if importlib.util.find_spec(f"herder.parsers.tools.{module}") is None:
        with pytest.raises(ValueError, match=f"{name}.*herder.parsers.tools.{module}"):
            get_tool_parser(name)
    else:
        assert get_tool_parser(name).name == name


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen_xml"),
        ("qwen3-coder-plus", "qwen_xml"),
        ("Qwen/Qwen3.5-72B", "qwen_xml"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen"),
        ("qwen3-8b", "qwen"),
        ("meta-llama/Llama-3.2-3B-Instruct", "llama"),
        ("meta-llama-3.2-1b", "llama"),
        ("meta-llama/Llama-4-Scout-17B-16E", "pythonic"),
        ("meta-llama/Llama-3.1-8B-Instruct", "json"),
        ("deepseek-ai/DeepSeek-V3-0324", "deepseek"),
        ("deepseek-ai/DeepSeek-V3.1", "deepseek31"),
        ("deepseek-ai/DeepSeek-V3.2-Exp", "deepseek31"),
        ("deepseek-ai/DeepSeek-V3.2", "deepseek32"),
        ("deepseek-v4-preview", "deepseek_v4"),
        ("deepseek-ai/DeepSeek-R1", "pythonic"),
        ("zai-org/GLM-4.5-Air", "glm45_moe"),
        ("glm-4.6", "glm45_moe"),
        ("GLM-4.7", "glm47_moe"),
        ("glm-5-preview", "glm47_moe"),
        ("glm-4-9b-chat", "json"),
        ("stepfun-ai/step3", "step3"),
        ("Step-3-mini", "step3"),
        ("moonshotai/Kimi-K2-Instruct", "kimik2"),
        ("kimi-k3-preview", "kimi_k3"),
        ("MiniMaxAI/MiniMax-M2", "minimax_m2"),
        ("CohereForAI/c4ai-command-r-plus", "cohere"),
        ("command-a-03-2025", "cohere"),
        ("sbintuitions/sarashina2.2-3b", "sarashina"),
        ("inkling-1", "inkling"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
        ("Mixtral-8x7B", "mistral"),
        ("gpt-4o-mini", "json"),
        ("gpt-3.5-turbo", "json"),
        ("claude-3-5-sonnet", "json"),
        ("gemini-1.5-pro", "json"),
        ("google/gemma-2-9b-it", "json"),
        ("some-unknown-model", None),
        ("", None),
    ],
)
def test_detect(model: str, expected: str | None) -> None:
    assert detect_tool_parser(model) == expected
    if model:
        assert detect_tool_parser(model.upper()) == expected  # case-insensitive
