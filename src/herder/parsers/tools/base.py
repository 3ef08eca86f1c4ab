"""Tool-call parser framework: result types, the ``ToolParser`` base class and its streaming engine.

API (stable; families build on it)
==================================

Results::

    ToolCall(name: str, arguments: str)                  # arguments = JSON object text
    ToolParseResult(normal_text: str, calls: list[ToolCall])
    ToolCallDelta(index: int, name: str | None, arguments_delta: str)
    ToolStreamDelta(normal_text: str = "", calls: list[ToolCallDelta] = [])

``ToolParser`` (abstract; one instance per request, it is stateful while streaming)::

    name: ClassVar[str]                        # registry name, e.g. "qwen"
    start_markers: ClassVar[tuple[str, ...]]   # texts that open a tool-call region
    __init__(tools: list[dict] | None = None)  # OpenAI tools list -> self.tools: dict[name, JSON schema]
    parse(text) -> ToolParseResult             # one-shot (runs the streaming engine on a private state)
    feed(chunk) -> ToolStreamDelta             # streaming
    finish() -> ToolStreamDelta                # end of stream: flushes everything, then resets the state
    reset() -> None
    has_tool_markers(text) -> bool             # cheap pre-check (default: any start marker in text)
    is_known_tool(name) -> bool                # True when no tools were given, else name in self.tools
    param_schema(tool, key) -> dict | None     # JSON schema of one parameter (for coercion)
    # a family implements:
    new_scanner(marker: str) -> SectionScanner # scanner for a region opened by ``marker``
    # and may override:
    find_start(buf) -> tuple[int, str] | None  # earliest region start (offset, marker); default: regex
    hold_length(buf) -> int                    # suffix to hold back (could start a marker); default: prefixes

How the engine streams (identical for one-shot and streaming, so results never depend on chunking):

1. Outside a region, text before the earliest start marker is normal text; a buffer suffix that could be
   the beginning of a marker is held back (released by ``finish``).
2. At a marker a ``SectionScanner`` is created; ``scan(buf, final, out)`` is called with ``buf`` = the text
   from the marker on (it only ever grows by appending while the scanner lives). The scanner re-reads only
   what it needs (keep offsets into ``buf``; O(total) overall) and reports through ``out: ScanOutput``:

   * ``out.text(s)``      normal text found inside the region (e.g. Cohere's response block)
   * ``out.name(s)``      a call's name - call only once the name is complete
   * ``out.args(s)``      the NEXT piece of the current call's arguments string; every piece is appended,
                          so pieces must form a prefix of the final arguments (no retraction). The
                          concatenation at call end must be a JSON object text.
   * ``out.end_call()``   the current call is complete (arguments "{}" are emitted if none were)
   * ``out.finish(end)``  the region is over; ``buf[end:]`` is scanned again as normal text
   * ``out.reject(n)``    not a tool call after all: ``buf[:n]`` becomes normal text (n >= 1), scanning
                          resumes at ``buf[n:]``. Only allowed before the region's first ``name``.
   * nothing              need more text.
   * ``out.lane(stop, emit_args, skip)``  optional speed-up (see ``ScanOutput.lane``): while chunks
                          contain no ``stop`` match, the engine passes them through without calling
                          ``scan`` (``RawJsonArgs`` and the JSON call scanner declare it inside strings).

   With ``final=True`` a scanner MUST finish or reject, closing any open call with repaired arguments
   (see ``RawJsonArgs`` / ``partial_json.JsonScanner.closer``). Decisions must depend only on the text
   (never on how it was split), otherwise streaming and one-shot results would differ.
3. Names are checked against ``tools`` (when given): an unknown name's call is skipped - its name and
   arguments are not emitted and its text is DROPPED (not returned as normal text) - and it does not use
   up a tool index, so valid calls are numbered 0, 1, 2, ... without gaps.
4. Deltas of one ``feed`` for the same index are merged (name + first arguments piece in one delta).
5. A call is committed once its name has been emitted: if its text turns out malformed or truncated
   later, its arguments are closed at their last safe point (valid JSON) and the region ends there; the
   rest is normal text again. Before the name, malformed text is returned unchanged as normal text.
   ``parse``/``feed`` never raise on model output.

Helpers for family scanners: ``RawJsonArgs`` (stream a raw JSON object value), ``held_suffix_len``
(hold back a partial end marker), ``json_fragment`` (JSON-escape a piece of string content),
``aggregate_deltas(deltas)`` (fold streamed deltas into a ``ToolParseResult``; used by ``parse``),
``stream_chunks(parser, chunks)`` (feed + finish + fold; handy in tests), ``coerce_param``
(schema-driven coercion of a textual parameter value; ``is_string_schema`` tells whether a value will
stay a string and so can be streamed), ``expect_at(buf, pos, lit, final)`` (1 = ``lit`` is at ``pos``,
0 = undecided yet (partial at the end), -1 = something else). Raw JSON re-emitted by a scanner must go
through ``JsonScanner.slice`` (escapes raw control characters inside strings).

The pure string/schema helpers (``held_suffix_len``, ``expect_at``, ``json_fragment``, ``coerce_param``,
``is_string_schema``, ``normalize_tools``) live in ``helpers.py`` and are re-exported here; ``RawJsonArgs``,
``stream_chunks`` and ``aggregate_deltas`` stay here (they need ``ScanOutput`` and the result types).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from herder.parsers.tools.helpers import (
    coerce_param,
    expect_at,
    held_suffix_len,
    is_string_schema,
    json_fragment,
    normalize_tools,
)
from herder.parsers.tools.partial_json import STRING_LANE_STOP, JsonScanner

__all__ = [
    "RawJsonArgs",
    "ScanOutput",
    "SectionScanner",
    "ToolCall",
    "ToolCallDelta",
    "ToolParseResult",
    "ToolParser",
    "ToolStreamDelta",
    "aggregate_deltas",
    "coerce_param",
    "expect_at",
    "held_suffix_len",
    "is_string_schema",
    "json_fragment",
    "normalize_tools",
    "stream_chunks",
]


@dataclass(slots=True)
class ToolCall:
    """One complete tool call; ``arguments`` is JSON object text."""

    name: str
    arguments: str


@dataclass(slots=True)
class ToolParseResult:
    """One-shot parse result."""

    normal_text: str
    calls: list[ToolCall]


@dataclass(slots=True)
class ToolCallDelta:
    """A streamed piece of tool call ``index``: its name (first delta only) and/or an arguments piece."""

    index: int
    name: str | None
    arguments_delta: str


@dataclass(slots=True)
class ToolStreamDelta:
    """What one ``feed``/``finish`` produced."""

    normal_text: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


# Event kinds produced by scanners.
_TEXT = 0
_NAME = 1
_ARGS = 2
_END = 3

PENDING = 0
DONE = 1
REJECTED = 2


class ScanOutput:
    """Collects a scanner's events for one ``scan`` call (see module docstring)."""

    __slots__ = ("end", "events", "lane_args", "lane_re", "lane_skip", "status")

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self.status = PENDING
        self.end = 0
        self.lane_re: re.Pattern[str] | None = None
        self.lane_args = False
        self.lane_skip: Callable[[int], None] | None = None

    def lane(self, stop: re.Pattern[str], emit_args: bool, skip: Callable[[int], None]) -> None:
        """Optional speed-up, declared at the end of a ``scan`` that consumed the whole buffer: until a
        chunk contains a match of ``stop``, the engine will not call ``scan``; it appends such chunks
        to the buffer, emits each one verbatim as an arguments piece (``emit_args``) or nothing, and
        calls ``skip(n)`` (n = characters passed) just before the next ``scan``. Only declare it when
        that is exactly what ``scan`` would have done for such a chunk (e.g. inside a JSON string with
        everything emitted: ``stop`` = quote, backslash, control characters)."""
        self.lane_re = stop
        self.lane_args = emit_args
        self.lane_skip = skip

    def text(self, s: str) -> None:
        if s:
            self.events.append((_TEXT, s))

    def name(self, s: str) -> None:
        self.events.append((_NAME, s))

    def args(self, s: str) -> None:
        if s:
            self.events.append((_ARGS, s))

    def end_call(self) -> None:
        self.events.append((_END, ""))

    def finish(self, end: int) -> None:
        self.status = DONE
        self.end = max(1, end)  # always make progress

    def reject(self, resume: int) -> None:
        self.status = REJECTED
        self.end = max(1, resume)


class SectionScanner(ABC):
    """Incremental scanner of one tool-call region (``buf[0:]`` starts with the opening marker)."""

    def __init__(self, parser: ToolParser, marker: str) -> None:
        self.parser = parser
        self.marker = marker

    @abstractmethod
    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        """Advance over ``buf`` (append-only between calls) and report events into ``out``."""


class RawJsonArgs:
    """Streams a raw JSON object (the arguments) that starts at offset ``start`` of a region buffer.

    ``step(buf, final, out)`` returns DONE (object complete: ``end`` is set), PENDING, or REJECTED (not a
    JSON object / invalid JSON; ``end`` = where the bad text starts). When it returns REJECTED after having emitted text, or when ``final`` is
    set before completion, the emitted prefix is closed with the right brackets so that the concatenation
    is valid JSON (the emitted text is always a prefix of the object up to its last safe point). Check
    ``emitted_any`` to know whether anything was sent.
    """

    __slots__ = ("_js", "emitted", "emitted_any", "end")

    def __init__(self, start: int) -> None:
        self._js = JsonScanner(start)
        self.emitted = -1
        self.emitted_any = False
        self.end = -1

    def step(self, buf: str, final: bool, out: ScanOutput | None) -> int:
        js = self._js
        js.feed(buf, final)
        if js.value_start >= 0 and buf[js.value_start] != "{":
            self.end = js.value_start
            return REJECTED
        if js.value_start >= 0 and self.emitted < 0:
            self.emitted = js.value_start
        if js.done:
            self.end = js.end
            if out is not None:
                out.args(js.slice(buf, self.emitted, js.end))
                self.emitted = js.end
                self.emitted_any = True
            return DONE
        stable = js.safe
        if out is not None and stable > self.emitted >= 0:
            out.args(js.slice(buf, self.emitted, stable))
            self.emitted = stable
            self.emitted_any = True
        if out is not None and not final and stable == self.emitted and js.in_value_string_at_end(buf):
            out.lane(STRING_LANE_STOP, True, self._skip)
        if js.error or final:
            if out is not None and self.emitted_any:
                out.args(js.closer())
            self.end = js.error_pos if js.error else len(buf)
            return REJECTED
        return PENDING

    @property
    def scanner(self) -> JsonScanner:
        return self._js

    def _skip(self, n: int) -> None:
        self._js.skip(n)
        self.emitted += n


_MARKER_RES: dict[tuple[str, ...], re.Pattern[str]] = {}
_FIRST_CHARS: dict[tuple[str, ...], str] = {}


@dataclass(slots=True)
class _StreamState:
    buf: str = ""
    scanner: SectionScanner | None = None
    index: int = 0
    section_named: bool = False
    call_open: bool = False
    call_valid: bool = False
    call_has_args: bool = False
    out: ScanOutput = field(default_factory=ScanOutput)
    lane_re: re.Pattern[str] | None = None  # see ScanOutput.lane
    lane_args: bool = False
    lane_skip: Callable[[int], None] | None = None
    lane_pending: int = 0


class ToolParser(ABC):
    """Base class of all tool-call parsers (see module docstring)."""

    name: ClassVar[str] = ""
    start_markers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tools: list[dict] | None = None) -> None:
        self.tools: dict[str, dict] = normalize_tools(tools)
        self._state = _StreamState()

    # ----- family hooks -------------------------------------------------------------------------
    @abstractmethod
    def new_scanner(self, marker: str) -> SectionScanner:
        """A fresh scanner for a region opened by ``marker``."""

    def find_start(self, buf: str) -> tuple[int, str] | None:
        """Earliest ``(offset, marker)`` of a start marker in ``buf``, or None."""
        if not self.start_markers:
            return None
        rx = _MARKER_RES.get(self.start_markers)
        if rx is None:
            alts = sorted(self.start_markers, key=len, reverse=True)  # longest wins at one offset
            rx = _MARKER_RES[self.start_markers] = re.compile("|".join(re.escape(m) for m in alts))
        m = rx.search(buf)
        return (m.start(), m.group()) if m else None

    def hold_length(self, buf: str) -> int:
        """How many trailing characters of ``buf`` (no marker in it) to hold back."""
        return held_suffix_len(buf, self.start_markers)

    # ----- public API -----------------------------------------------------------------------------
    def is_known_tool(self, name: str) -> bool:
        if not name:
            return False
        return not self.tools or name in self.tools

    def param_schema(self, tool: str, key: str) -> dict | None:
        props = self.tools.get(tool, {}).get("properties")
        if isinstance(props, dict):
            s = props.get(key)
            return s if isinstance(s, dict) else None
        return None

    def has_tool_markers(self, text: str) -> bool:
        return any(m in text for m in self.start_markers)

    def reset(self) -> None:
        self._state = _StreamState()

    def feed(self, chunk: str) -> ToolStreamDelta:
        return self._run(self._state, chunk, False)

    def finish(self) -> ToolStreamDelta:
        out = self._run(self._state, "", True)
        self._state = _StreamState()
        return out

    def parse(self, text: str) -> ToolParseResult:
        return aggregate_deltas([self._run(_StreamState(), text, True)])

    # ----- engine ---------------------------------------------------------------------------------
    def _run(self, st: _StreamState, chunk: str, final: bool) -> ToolStreamDelta:
        buf = st.buf
        sc = st.scanner
        lane = st.lane_re
        if lane is not None and not final and lane.search(chunk) is None:
            # Lane fast path (ScanOutput.lane): the scanner said such a chunk changes nothing else.
            st.buf = ""
            buf += chunk
            st.buf = buf
            st.lane_pending += len(chunk)
            if st.lane_args and st.call_valid and chunk:
                st.call_has_args = True
                return ToolStreamDelta("", [ToolCallDelta(st.index, None, chunk)])
            return ToolStreamDelta("", [])
        if sc is None and not buf and not final:
            # Fast path: plain text that cannot contain (the start of) a start marker.
            firsts = _FIRST_CHARS.get(self.start_markers)
            if firsts is None:
                firsts = _FIRST_CHARS[self.start_markers] = "".join({m[0] for m in self.start_markers})
            for c in firsts:
                if c in chunk:
                    break
            else:
                return ToolStreamDelta(chunk, [])
        st.buf = ""
        buf += chunk  # buf is the only reference: CPython appends in place
        normal: list[str] = []
        calls: list[ToolCallDelta] = []
        out = st.out
        events = out.events
        while True:
            if sc is None:
                hit = self.find_start(buf) if buf else None
                if hit is None:
                    keep = 0 if final else self.hold_length(buf)
                    if keep < len(buf):
                        normal.append(buf[: len(buf) - keep])
                        buf = buf[len(buf) - keep :]
                    break
                at, marker = hit
                if at:
                    normal.append(buf[:at])
                    buf = buf[at:]
                sc = st.scanner = self.new_scanner(marker)
                st.section_named = False
            events.clear()
            out.status = PENDING
            if st.lane_re is not None:
                st.lane_re = None
                if st.lane_pending:
                    assert st.lane_skip is not None
                    st.lane_skip(st.lane_pending)
                    st.lane_pending = 0
            out.lane_re = None
            sc.scan(buf, final, out)
            if events:
                if len(events) == 1 and events[0][0] == _ARGS and not calls:
                    # fast path: one more arguments piece of the current call
                    if st.call_valid:
                        st.call_has_args = True
                        calls.append(ToolCallDelta(st.index, None, events[0][1]))
                else:
                    self._apply(st, events, normal, calls)
            status = out.status
            if status == PENDING:
                if not final:
                    if out.lane_re is not None:
                        st.lane_re = out.lane_re
                        st.lane_args = out.lane_args
                        st.lane_skip = out.lane_skip
                    break
                # Defensive: a scanner must finish at the end; drop what it did not claim.
                status = DONE if st.section_named else REJECTED
                out.end = len(buf)
            if st.call_open:
                self._end_call(st, calls)
            sc = st.scanner = None
            if status == REJECTED and not st.section_named:
                normal.append(buf[: out.end])
            buf = buf[out.end :]
            if not buf:
                break
        st.buf = buf
        if not normal:
            return ToolStreamDelta("", calls)
        return ToolStreamDelta(normal[0] if len(normal) == 1 else "".join(normal), calls)

    def _apply(
        self, st: _StreamState, events: list[tuple[int, str]], normal: list[str], calls: list[ToolCallDelta]
    ) -> None:
        for kind, val in events:
            if kind == _ARGS:
                if st.call_valid:
                    st.call_has_args = True
                    if calls and calls[-1].index == st.index:
                        calls[-1].arguments_delta += val
                    else:
                        calls.append(ToolCallDelta(st.index, None, val))
            elif kind == _TEXT:
                normal.append(val)
            elif kind == _NAME:
                if st.call_open:
                    self._end_call(st, calls)
                st.section_named = True
                st.call_open = True
                st.call_has_args = False
                st.call_valid = self.is_known_tool(val)
                if st.call_valid:
                    _add(calls, st.index, val, "")
            elif st.call_open:
                self._end_call(st, calls)

    @staticmethod
    def _end_call(st: _StreamState, calls: list[ToolCallDelta]) -> None:
        if st.call_valid:
            if not st.call_has_args:
                _add(calls, st.index, None, "{}")
            st.index += 1
        st.call_open = False
        st.call_valid = False
        st.call_has_args = False


def stream_chunks(parser: ToolParser, chunks: Iterable[str]) -> ToolParseResult:
    """Feed ``chunks`` then ``finish`` and fold the deltas (the parser is reset afterwards)."""
    deltas = [parser.feed(c) for c in chunks]
    deltas.append(parser.finish())
    return aggregate_deltas(deltas)


def aggregate_deltas(deltas: list[ToolStreamDelta]) -> ToolParseResult:
    """Fold a stream of deltas into the equivalent one-shot result (calls ordered by index)."""
    normal: list[str] = []
    names: dict[int, str] = {}
    args: dict[int, list[str]] = {}
    for d in deltas:
        normal.append(d.normal_text)
        for c in d.calls:
            if c.name is not None:
                names.setdefault(c.index, c.name)
            args.setdefault(c.index, []).append(c.arguments_delta)
    calls = [ToolCall(names.get(i, ""), "".join(args[i])) for i in sorted(args)]
    return ToolParseResult("".join(normal), calls)


def _add(calls: list[ToolCallDelta], index: int, name: str | None, args: str) -> None:
    if calls and calls[-1].index == index:
        last = calls[-1]
        if name is not None:
            last.name = name
        last.arguments_delta += args
    else:
        calls.append(ToolCallDelta(index, name, args))
