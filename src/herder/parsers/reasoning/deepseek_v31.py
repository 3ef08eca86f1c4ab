"""DeepSeek-V3.1 (hybrid thinking): ``<think>`` … ``</think>`` only when the model opens it."""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class DeepSeekV31Parser(BaseReasoningParser):
    """``deepseek_v31``: does not start inside reasoning (the gateway calls
    ``mark_reasoning_started()`` when thinking mode prefilled ``<think>``)."""

    name = "deepseek_v31"
    default_starts_in_reasoning = False
