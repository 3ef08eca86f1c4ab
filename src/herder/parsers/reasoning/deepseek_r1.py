"""DeepSeek-R1: ``<think>`` … ``</think>``; the template opens the block, so the output starts in it."""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class DeepSeekR1Parser(BaseReasoningParser):
    """``deepseek_r1``: starts inside reasoning; only ``</think>`` is expected (a leading ``<think>``
    that some checkpoints still emit is dropped)."""

    name = "deepseek_r1"
    default_starts_in_reasoning = True
