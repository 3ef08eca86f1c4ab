"""Reasoning-parser registry: names → fresh parser instances, and model id → parser name.

Every call to ``get_reasoning_parser`` builds a new instance (parsers are per-request state
machines); the registry itself holds only immutable tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from herder.parsers.reasoning.base import BaseReasoningParser, ReasoningParser
from herder.parsers.reasoning.cohere_cmd import CohereCmdParser
from herder.parsers.reasoning.deepseek_r1 import DeepSeekR1Parser
from herder.parsers.reasoning.deepseek_v31 import DeepSeekV31Parser
from herder.parsers.reasoning.glm45 import Glm45Parser
from herder.parsers.reasoning.inkling import InklingParser
from herder.parsers.reasoning.kimi import KimiK25Parser, KimiParser, KimiThinkingParser
from herder.parsers.reasoning.kimi_k3 import KimiK3Parser
from herder.parsers.reasoning.minimax import MiniMaxParser
from herder.parsers.reasoning.nano_v3 import NanoV3Parser
from herder.parsers.reasoning.passthrough import PassthroughParser
from herder.parsers.reasoning.qwen3 import Qwen3Parser, Qwen3ThinkingParser
from herder.parsers.reasoning.step3 import Step3Parser

_FACTORIES: dict[str, Callable[..., ReasoningParser]] = {
    "base": BaseReasoningParser,
    "passthrough": PassthroughParser,
    "deepseek_r1": DeepSeekR1Parser,
    "deepseek_v31": DeepSeekV31Parser,
    "qwen3": Qwen3Parser,
    "qwen3_thinking": Qwen3ThinkingParser,
    "glm45": Glm45Parser,
    "step3": Step3Parser,
    "minimax": MiniMaxParser,
    "kimi": KimiParser,
    "kimi_k25": KimiK25Parser,
    "kimi_thinking": KimiThinkingParser,
    "kimi_k3": KimiK3Parser,
    "cohere_cmd": CohereCmdParser,
    "nano_v3": NanoV3Parser,
    "inkling": InklingParser,
}

#: (substring, parser) pairs, matched case-insensitively against the model id; first match wins.
#: The order is SMG's, with the more specific patterns first (``qwen3-thinking`` before ``qwen``,
#: ``kimi-k3``/``kimi-k2-thinking``/``kimi-k2.5`` before ``kimi``). Additions over the spec table,
#: for real Hugging Face ids: ``glm-4.5``/``glm-4.6``/``glm-4.7`` (GLM-4.x uses the glm45 format).
MODEL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("deepseek-r1", "deepseek_r1"),
    ("deepseek-v3.1", "deepseek_v31"),
    ("deepseek-v3-1", "deepseek_v31"),
    ("qwen3-thinking", "qwen3_thinking"),
    ("qwen-thinking", "qwen3_thinking"),
    ("qwen3", "qwen3"),
    ("qwen", "qwen3"),
    ("glm45", "glm45"),
    ("glm47", "glm45"),
    ("glm-4.5", "glm45"),
    ("glm-4.6", "glm45"),
    ("glm-4.7", "glm45"),
    ("glm-5", "glm45"),
    ("kimi-k3", "kimi_k3"),
    ("kimi_k3", "kimi_k3"),
    ("kimi-k2-thinking", "kimi_thinking"),
    ("kimi-k2.5", "kimi_k25"),
    ("kimi", "kimi"),
    ("step3", "step3"),
    ("minimax", "minimax"),
    ("minimax-m2", "minimax"),
    ("mm-m2", "minimax"),
    ("command-r", "cohere_cmd"),
    ("command-a", "cohere_cmd"),
    ("c4ai-command", "cohere_cmd"),
    ("cohere", "cohere_cmd"),
    ("nemotron-nano", "nano_v3"),
    ("nemotron-super", "nano_v3"),
    ("nano-v3", "nano_v3"),
    ("inkling", "inkling"),
)


def reasoning_parser_names() -> list[str]:
    """All registered parser names, sorted."""
    return sorted(_FACTORIES)


def get_reasoning_parser(name: str, **opts: Any) -> ReasoningParser:
    """A fresh parser instance for ``name``.

    Options every parser accepts: ``stream_reasoning`` (bool, default True),
    ``starts_in_reasoning`` (bool | None: override the family default) and ``max_buffer_size``.
    ``base`` also takes ``start_tag`` and ``end_tag``. Raises ``ValueError`` naming the valid
    parsers for an unknown name, ``TypeError`` for an unknown option.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(
            f"unknown reasoning parser {name!r}; valid parsers: {', '.join(reasoning_parser_names())}"
        )
    return factory(**opts)


def detect_reasoning_parser(model_id: str) -> str | None:
    """Parser name for a model id by substring pattern, or None (= use ``passthrough``)."""
    lowered = model_id.lower()
    for pattern, parser in MODEL_PATTERNS:
        if pattern in lowered:
            return parser
    return None
