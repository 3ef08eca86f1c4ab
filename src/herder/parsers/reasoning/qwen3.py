"""Qwen3: ``<think>`` … ``</think>``; hybrid models open the block themselves, *-Thinking models do not."""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class Qwen3Parser(BaseReasoningParser):
    """``qwen3``: reasoning only after an explicit ``<think>``."""

    name = "qwen3"
    default_starts_in_reasoning = False


class Qwen3ThinkingParser(BaseReasoningParser):
    """``qwen3_thinking``: Qwen3-*-Thinking templates prefill ``<think>``; the output starts in it."""

    name = "qwen3_thinking"
    default_starts_in_reasoning = True
