"""Kimi K2 families.

* ``kimi`` (legacy K2-Instruct): Unicode tags ``◁think▷`` … ``◁/think▷``, not starting in reasoning.
* ``kimi_k25`` (Kimi-K2.5): ``<think>`` … ``</think>``, not starting in reasoning.
* ``kimi_thinking`` (Kimi-K2-Thinking): ``<think>`` … ``</think>``, starting in reasoning.

Kimi-K3 uses XTML channels instead; see ``kimi_k3.py``.
"""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class KimiParser(BaseReasoningParser):
    """``kimi``: ``◁think▷`` … ``◁/think▷``."""

    name = "kimi"
    default_start_tag = "\u25c1think\u25b7"
    default_end_tag = "\u25c1/think\u25b7"
    default_starts_in_reasoning = False


class KimiK25Parser(BaseReasoningParser):
    """``kimi_k25``: ``<think>`` … ``</think>``, opened by the model."""

    name = "kimi_k25"
    default_starts_in_reasoning = False


class KimiThinkingParser(BaseReasoningParser):
    """``kimi_thinking``: ``<think>`` … ``</think>``, starts inside reasoning."""

    name = "kimi_thinking"
    default_starts_in_reasoning = True
