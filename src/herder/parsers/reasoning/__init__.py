"""Reasoning parsers: split model output into reasoning text and normal (visible) text.

Sans-I/O: ``parse(text)`` for a whole output, ``feed(chunk)``/``finish()`` for a stream. Use
``get_reasoning_parser(name, **opts)`` for a fresh per-request instance and
``detect_reasoning_parser(model_id)`` to pick a name from the model id.
"""

from herder.parsers.reasoning.base import (
    MAX_BUFFER_SIZE,
    BaseReasoningParser,
    ReasoningBufferOverflow,
    ReasoningDelta,
    ReasoningParser,
    ReasoningResult,
)
from herder.parsers.reasoning.registry import (
    MODEL_PATTERNS,
    detect_reasoning_parser,
    get_reasoning_parser,
    reasoning_parser_names,
)

__all__ = [
    "MAX_BUFFER_SIZE",
    "MODEL_PATTERNS",
    "BaseReasoningParser",
    "ReasoningBufferOverflow",
    "ReasoningDelta",
    "ReasoningParser",
    "ReasoningResult",
    "detect_reasoning_parser",
    "get_reasoning_parser",
    "reasoning_parser_names",
]
