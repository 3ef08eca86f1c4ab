"""StepFun Step-3: ``<think>`` … ``</think>``, the block is opened by the template."""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class Step3Parser(BaseReasoningParser):
    """``step3``: starts inside reasoning (same shape as DeepSeek-R1)."""

    name = "step3"
    default_starts_in_reasoning = True
