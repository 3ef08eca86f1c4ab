"""``mistral``: ``[TOOL_CALLS]`` + a JSON array of ``{name, arguments}`` (or one object), or the newer
``[TOOL_CALLS]name[ARGS]{...}`` form (optionally ``name[CALL_ID]id[ARGS]{...}``), one marker per call."""

from __future__ import annotations

import re

from herder.parsers.tools.base import (
    PENDING,
    RawJsonArgs,
    ScanOutput,
    SectionScanner,
    ToolParser,
    expect_at,
)
from herder.parsers.tools.json_parser import JsonCallsScanner

__all__ = ["MistralToolParser"]

_WS = re.compile(r"\s*")
_NAME = re.compile(r"[^\s\[\]{}\"'<>(),;]*")
_CALL_ID = re.compile(r"[A-Za-z0-9_\-]*")
_MAX_NAME = 256


class _MistralScanner(SectionScanner):
    def __init__(self, parser: ToolParser, marker: str) -> None:
        super().__init__(parser, marker)
        self._json: JsonCallsScanner | None = None
        self._args: RawJsonArgs | None = None

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        if self._json is not None:
            self._json.scan(buf, final, out)
            return
        if self._args is None and not self._start_call(buf, final, out):
            return
        args = self._args
        assert args is not None
        st = args.step(buf, final, out)
        if st == PENDING:
            return
        out.end_call()
        out.finish(args.end)

    def _start_call(self, buf: str, final: bool, out: ScanOutput) -> bool:
        """Reads ``name[ARGS]`` (or switches to JSON); True once the arguments begin."""
        skip = len(self.marker)
        p = _WS.match(buf, skip).end()  # type: ignore[union-attr]
        n = len(buf)
        if p >= n:
            if final:
                out.reject(skip)
            return False
        if buf[p] in "[{":
            self._json = JsonCallsScanner(self.parser, self.marker)
            self._json.scan(buf, final, out)
            return False
        q = _NAME.match(buf, p).end()  # type: ignore[union-attr]
        if q - p > _MAX_NAME:
            out.reject(skip)
            return False
        if q >= n:
            if final:
                out.reject(skip)
            return False
        r = expect_at(buf, q, "[ARGS]", final)
        if r == 1:
            args_at = q + len("[ARGS]")
        elif expect_at(buf, q, "[CALL_ID]", final) == 1:
            c = _CALL_ID.match(buf, q + len("[CALL_ID]")).end()  # type: ignore[union-attr]
            r = expect_at(buf, c, "[ARGS]", final) if c < n or final else 0
            if r != 1:
                if r < 0:
                    out.reject(skip)
                return False
            args_at = c + len("[ARGS]")
        elif r == 0 or expect_at(buf, q, "[CALL_ID]", final) == 0:
            return False
        else:
            out.reject(skip)
            return False
        if q == p:
            out.reject(skip)
            return False
        out.name(buf[p:q])
        self._args = RawJsonArgs(args_at)
        return True


class MistralToolParser(ToolParser):
    """Mistral / Mixtral tool calls (both the JSON-array and the ``[ARGS]`` formats)."""

    name = "mistral"
    start_markers = ("[TOOL_CALLS]",)

    def new_scanner(self, marker: str) -> SectionScanner:
        return _MistralScanner(self, marker)
