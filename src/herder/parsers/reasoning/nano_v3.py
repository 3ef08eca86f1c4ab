"""NVIDIA Nemotron Nano/Super v3: ``<think>`` … ``</think>`` with a template thinking toggle.

The template prefills ``<think>\\n`` when thinking is on and ``<think></think>`` when it is off, so
the parser starts outside reasoning and the gateway calls ``mark_reasoning_started()`` (or passes
``starts_in_reasoning=True``) when the rendered prompt ends inside an open block.
"""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class NanoV3Parser(BaseReasoningParser):
    """``nano_v3``: initial mode is set at runtime (default: not in reasoning)."""

    name = "nano_v3"
    default_starts_in_reasoning = False
