"""Cohere Command (CMD3/CMD4): ``<|START_THINKING|>`` … ``<|END_THINKING|>``.

``<|START_RESPONSE|>``/``<|END_RESPONSE|>`` and action blocks are left in the normal text: the
``cohere`` tool parser owns them (as in SMG).
"""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class CohereCmdParser(BaseReasoningParser):
    """``cohere_cmd``: explicit start token required."""

    name = "cohere_cmd"
    default_start_tag = "<|START_THINKING|>"
    default_end_tag = "<|END_THINKING|>"
    default_starts_in_reasoning = False
