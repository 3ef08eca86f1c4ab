"""``sarashina``: an optional ``<|tool_calls|>`` marker + a Python-literal list of dicts
``[{'name': 'f', 'arguments': {...}}, ...]`` (JSON literals ``true/false/null`` are tolerated). Each dict is
parsed (``ast.literal_eval``, never evaluated) when complete and emitted whole."""

from __future__ import annotations

import ast
import json
from typing import Any

from herder.parsers.tools.base import SectionScanner, ToolParser
from herder.parsers.tools.pythonic import ERROR, PENDING, PyListScanner

__all__ = ["SarashinaToolParser"]

MARKER = "<|tool_calls|>"
_ARGS_KEYS = ("arguments", "parameters")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return None


class _SarashinaScanner(PyListScanner):
    def item_open(self, buf: str, p: int, final: bool) -> int:
        if p >= len(buf):
            return ERROR if final else PENDING
        return p if buf[p] == "{" else ERROR

    def parse_item(self, text: str) -> tuple[str, dict] | None:
        item = _literal(text)
        if not isinstance(item, dict):
            return None
        name = item.get("name")
        if not isinstance(name, str) or not name:
            return None
        args: Any = {}
        for key in _ARGS_KEYS:
            if key in item:
                args = item[key]
                break
        if isinstance(args, str):
            args = _literal(args)
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return None
        return name, args


class SarashinaToolParser(ToolParser):
    """Sarashina tool-call lists."""

    name = "sarashina"
    start_markers = (MARKER, "[")

    def new_scanner(self, marker: str) -> SectionScanner:
        return _SarashinaScanner(self, marker)

    def has_tool_markers(self, text: str) -> bool:
        return MARKER in text or "[{" in text
