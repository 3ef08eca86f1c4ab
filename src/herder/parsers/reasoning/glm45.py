"""GLM-4.5 / 4.7 / 5: ``<think>`` … ``</think>`` emitted by the model."""

from __future__ import annotations

from herder.parsers.reasoning.base import BaseReasoningParser


class Glm45Parser(BaseReasoningParser):
    """``glm45``: does not start inside reasoning."""

    name = "glm45"
    default_starts_in_reasoning = False
