"""Registry: names, fresh instances, unknown names, model-id auto-detection."""

from __future__ import annotations

import pytest

from herder.parsers.reasoning import (
    ReasoningParser,
    detect_reasoning_parser,
    get_reasoning_parser,
    reasoning_parser_names,
)
from herder.parsers.reasoning.base import MarkerScanner, MarkerSet

SPEC_NAMES = {
    "base",
    "passthrough",
    "deepseek_r1",
    "deepseek_v31",
    "qwen3",
    "qwen3_thinking",
    "glm45",
    "step3",
    "minimax",
    "kimi",
    "kimi_k25",
    "kimi_thinking",
    "kimi_k3",
    "cohere_cmd",
    "nano_v3",
    "inkling",
}


def test_names_are_the_spec_sixteen() -> None:
    names = reasoning_parser_names()
    assert set(names) == SPEC_NAMES
    assert names == sorted(names)


@pytest.mark.parametrize("name", sorted(SPEC_NAMES))
def test_every_name_builds_a_fresh_parser(name: str) -> None:
    a, b = get_reasoning_parser(name), get_reasoning_parser(name)
    assert isinstance(a, ReasoningParser)
    assert a is not b
    assert a.name == name
    assert get_reasoning_parser(name, stream_reasoning=False).stream_reasoning is False


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as exc:
        get_reasoning_parser("deepseek")
    msg = str(exc.value)
    assert "'deepseek'" in msg
    for name in SPEC_NAMES:
        assert name in msg


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        get_reasoning_parser("qwen3", start_tag_typo="x")


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("deepseek-ai/DeepSeek-R1", "deepseek_r1"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek_r1"),  # r1 before qwen
        ("deepseek-ai/DeepSeek-V3.1-Terminus", "deepseek_v31"),
        ("deepseek-v3-1-base", "deepseek_v31"),
        ("deepseek-ai/DeepSeek-V3", None),
        ("Qwen/Qwen3-8B", "qwen3"),
        ("qwen3-thinking-2507", "qwen3_thinking"),  # before "qwen3"/"qwen"
        ("Qwen-Thinking-Mini", "qwen3_thinking"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen3"),  # "qwen" catches the rest, as in SMG
        ("zai-org/GLM-4.5-Air", "glm45"),
        ("glm47-flash", "glm45"),
        ("zai-org/GLM-5", "glm45"),
        ("moonshotai/Kimi-K2-Instruct", "kimi"),
        ("moonshotai/Kimi-K2-Thinking", "kimi_thinking"),
        ("moonshotai/Kimi-K2.5", "kimi_k25"),
        ("moonshotai/Kimi-K3", "kimi_k3"),
        ("kimi_k3-preview", "kimi_k3"),
        ("stepfun-ai/step3", "step3"),
        ("MiniMaxAI/MiniMax-M2", "minimax"),
        ("mm-m2-chat", "minimax"),
        ("CohereForAI/c4ai-command-r-plus", "cohere_cmd"),
        ("command-a-reasoning", "cohere_cmd"),
        ("nvidia/Nemotron-Nano-12B-v3", "nano_v3"),
        ("nvidia/Nemotron-H-8B", None),  # no nano/super/nano-v3 in the id
        ("nvidia/NVIDIA-Nemotron-Nano-9B-v2", "nano_v3"),
        ("nemotron-super-49b", "nano_v3"),
        ("Inkling-7B", "inkling"),
        ("meta-llama/Llama-3.1-8B-Instruct", None),
        ("gpt-4o", None),
        ("", None),
    ],
)
def test_detect(model_id: str, expected: str | None) -> None:
    assert detect_reasoning_parser(model_id) == expected


def test_detected_names_are_registered() -> None:
    from herder.parsers.reasoning import MODEL_PATTERNS

    for pattern, name in MODEL_PATTERNS:
        assert name in SPEC_NAMES
        assert pattern == pattern.lower()
        assert detect_reasoning_parser(pattern.upper()) is not None


# ------------------------------------------------------------------ MarkerScanner
def _drain(scanner: MarkerScanner, ms: MarkerSet) -> list[tuple[str, str | None]]:
    out = []
    while (ev := scanner.next(ms)) is not None:
        out.append(ev)
    return out


def test_scanner_finds_markers_and_holds_partial_tail() -> None:
    ms = MarkerSet(("<a>", "<bb>"))
    s = MarkerScanner()
    s.feed("x<a>y<b")
    assert _drain(s, ms) == [("x", "<a>"), ("y", None)]
    assert s.held == 2
    s.feed("b>z<")
    assert _drain(s, ms) == [("", "<bb>"), ("z", None)]
    assert s.flush() == "<"
    assert s.held == 0


def test_scanner_releases_a_false_start() -> None:
    ms = MarkerSet(("<think>",))
    s = MarkerScanner()
    s.feed("a <th")
    assert _drain(s, ms) == [("a ", None)]
    s.feed("ere")
    assert _drain(s, ms) == [("<there", None)]


def test_scanner_several_first_characters() -> None:
    ms = MarkerSet(("◁x▷", "<y>"))
    s = MarkerScanner()
    s.feed("1◁x▷2<y>3◁")
    assert _drain(s, ms) == [("1", "◁x▷"), ("2", "<y>"), ("3", None)]
    assert s.flush() == "◁"


def test_marker_set_rejects_empty_marker() -> None:
    with pytest.raises(ValueError):
        MarkerSet(("",))
