"""MiniMax-M2: ``<think>`` … ``</think>``; the template injects ``<think>`` in the prefill.

SMG prepends ``<think>`` to the first chunk; starting inside reasoning (and dropping a redundant
leading ``<think>``) is the same thing without copying the first chunk.
"""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class MiniMaxParser(BaseReasoningParser):
    """``minimax``: starts inside reasoning."""

    name = "minimax"
    default_starts_in_reasoning = True
