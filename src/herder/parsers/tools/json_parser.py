"""``json`` family: a bare JSON object or array of ``{name, arguments|parameters}``.

Also hosts the reusable JSON call scanners used by the marker-based JSON families (qwen, mistral, llama,
cohere, inkling):

- ``CallSpec``: which keys hold the name / the arguments, which keys may come first.
- ``JsonCallObject``: streams ONE call object ``{"name": ..., "arguments": {...}}`` (keys in any order;
  the arguments object is streamed raw once the name is known; a JSON-string ``arguments`` holding an
  object is decoded when complete).
- ``JsonCallsScanner``: a region scanner for ``[marker] (object | [object, ...]) [sep object ...] [end]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from herder.parsers.tools.base import (
    DONE,
    PENDING,
    REJECTED,
    ScanOutput,
    SectionScanner,
    ToolParser,
)
from herder.parsers.tools.partial_json import STRING_LANE_STOP, JsonScanner

__all__ = ["BROKEN", "CallSpec", "JsonCallObject", "JsonCallsScanner", "JsonToolParser"]

# JsonCallObject.step result: the call was emitted, but the object is malformed after some point.
BROKEN = 3

_WS = re.compile(r"\s*")


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Keys of a JSON tool-call object."""

    name_keys: frozenset[str] = frozenset({"name"})
    args_keys: frozenset[str] = frozenset({"arguments", "parameters"})
    extra_first_keys: frozenset[str] = frozenset({"type", "id"})

    def first_ok(self, key: str) -> bool:
        return key in self.name_keys or key in self.args_keys or key in self.extra_first_keys


DEFAULT_SPEC = CallSpec()


class JsonCallObject:
    """Incremental scanner of one JSON call object starting at ``start`` (see module docstring).

    ``step`` returns PENDING, DONE (``end`` set), REJECTED (not a call object; nothing was emitted) or
    BROKEN (the call was emitted and its arguments closed; malformed text starts at ``end``).
    """

    __slots__ = ("_args_ve", "_args_vs", "_emitted", "_first", "_js", "_nmem", "_sent", "end", "name", "spec")

    def __init__(self, start: int, spec: CallSpec = DEFAULT_SPEC) -> None:
        self._js = JsonScanner(start)
        self.spec = spec
        self.name: str | None = None
        self._sent = False
        self._args_vs = -1
        self._args_ve = -1
        self._emitted = -1
        self._nmem = 0
        self._first = False
        self.end = -1

    def step(self, buf: str, final: bool, out: ScanOutput) -> int:
        js = self._js
        js.feed(buf, final)
        if self._sent and self._nmem == len(js.members) and not js.done and not js.error and not final:
            # fast path: streaming the arguments object (the most common state by far)
            if self._args_ve < 0 and self._emitted >= 0:
                stop = js.safe
                if stop > self._emitted:
                    out.args(js.slice(buf, self._emitted, stop))
                    self._emitted = stop
                if stop == js.pos and js.in_value_string_at_end(buf):
                    out.lane(STRING_LANE_STOP, True, self._skip)
                return PENDING
            if self._args_vs >= 0:
                self._emit_args(buf, out)
                return PENDING
            if js.member_start < 0:
                return PENDING
        spec = self.spec
        if js.value_start >= 0 and buf[js.value_start] != "{":
            return REJECTED
        if not self._first and js.root_key is not None:
            self._first = True
            first = js.members[0][0] if js.members else js.root_key  # one big feed may pass several keys
            if not spec.first_ok(first):
                return REJECTED
        members = js.members
        while self._nmem < len(members):
            key, vs, ve = members[self._nmem]
            self._nmem += 1
            if key in spec.name_keys and self.name is None:
                v = json.loads(buf[vs:ve], strict=False)
                if not isinstance(v, str) or not v:
                    if not self._sent:
                        return REJECTED
                    continue
                self.name = v
            elif key in spec.args_keys and self._args_ve < 0 and self._args_vs in (-1, vs):
                # the first arguments member (possibly already being streamed) is now complete
                self._args_vs, self._args_ve = vs, ve
        if (
            self._args_vs < 0
            and js.member_start >= 0
            and js.root_key in spec.args_keys
            and buf[js.member_start] == "{"
        ):
            self._args_vs = js.member_start
        if self.name is not None and not self._sent:
            out.name(self.name)
            self._sent = True
        if self._sent:
            self._emit_args(buf, out)
        if js.done:
            if not self._sent:
                return REJECTED
            self.end = js.end
            return DONE
        if js.error or final:
            if not self._sent:
                return REJECTED
            if self._args_vs >= 0 and self._args_ve < 0 and self._emitted > self._args_vs:
                out.args(js.closer(1))
            self.end = js.error_pos if js.error else len(buf)
            return BROKEN
        return PENDING

    def _skip(self, n: int) -> None:
        self._js.skip(n)
        self._emitted += n

    def _emit_args(self, buf: str, out: ScanOutput) -> None:
        vs = self._args_vs
        if vs < 0 or self._emitted == -2:
            return
        if buf[vs] == "{":
            if self._emitted < 0:
                self._emitted = vs
            stop = self._args_ve if self._args_ve >= 0 else max(self._js.safe, self._emitted)
            if stop > self._emitted:
                out.args(self._js.slice(buf, self._emitted, stop))
                self._emitted = stop
        elif self._args_ve >= 0:
            self._emitted = -2  # decided once
            v = json.loads(buf[vs : self._args_ve], strict=False)
            if isinstance(v, str):
                try:
                    d = json.loads(v, strict=False)
                except ValueError:
                    return
                if isinstance(d, dict):
                    out.args(json.dumps(d, ensure_ascii=False))


class JsonCallsScanner(SectionScanner):
    """Region: ``marker`` then one call object or an array of them, optional separators, optional end.

    ``include_marker``: the marker is the JSON's own first character (``{``/``[``) rather than a prefix.
    ``separator``: e.g. ``";"`` between objects outside an array (Llama). ``end_marker``: consumed after
    the body when present (a missing end marker is tolerated: the region ends after the body).
    """

    def __init__(
        self,
        parser: ToolParser,
        marker: str,
        *,
        spec: CallSpec = DEFAULT_SPEC,
        include_marker: bool = False,
        allow_array: bool = True,
        separator: str = "",
        end_marker: str = "",
        start: int | None = None,
    ) -> None:
        super().__init__(parser, marker)
        self.spec = spec
        self.allow_array = allow_array
        self.separator = separator
        self.end_marker = end_marker
        self._skip = 0 if include_marker else len(marker)
        self._pos = self._skip if start is None else start
        self._phase = 0  # 0 body start, 1 object, 2 after object, 3 end marker
        self._in_array = False
        self._obj: JsonCallObject | None = None
        self._named = False

    def _give_up(self, at: int, out: ScanOutput) -> None:
        if self._named:
            out.finish(at)
        else:
            out.reject(self._skip or 1)

    def _obj_step(self, buf: str, final: bool, out: ScanOutput) -> bool:
        """Advance the current call object; True when it is complete and scanning goes on."""
        obj = self._obj
        assert obj is not None
        return self._obj_result(obj, obj.step(buf, final, out), out)

    def _obj_result(self, obj: JsonCallObject, st: int, out: ScanOutput) -> bool:
        if st == PENDING:
            return False
        if st == REJECTED:
            self._give_up(self._pos, out)
            return False
        self._named = True
        out.end_call()
        if st != DONE:
            out.finish(obj.end)
            return False
        self._pos = obj.end
        self._phase = 2
        return True

    def scan(self, buf: str, final: bool, out: ScanOutput) -> None:
        if self._phase == 1:
            obj = self._obj
            assert obj is not None
            st = obj.step(buf, final, out)
            if st == PENDING or not self._obj_result(obj, st, out):
                return
        n = len(buf)
        while True:
            if self._phase == 0:
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                if p >= n:
                    if final:
                        self._give_up(self._pos, out)
                    return
                c = buf[p]
                if c == "[" and self.allow_array and not self._in_array and not self._named:
                    self._in_array = True
                    self._pos = p + 1
                    continue
                if c != "{":
                    self._give_up(self._pos, out)
                    return
                self._obj = JsonCallObject(p, self.spec)
                self._pos = p
                self._phase = 1
                if not self._obj_step(buf, final, out):
                    return
            if self._phase == 2:
                p = _WS.match(buf, self._pos).end()  # type: ignore[union-attr]
                if p >= n:
                    if final:
                        self._finish_after(buf, self._pos, out)
                    elif self._in_array or self.separator or self.end_marker:
                        return
                    else:
                        out.finish(self._pos)
                    return
                c = buf[p]
                if self._in_array:
                    if c == ",":
                        self._pos = p + 1
                        self._phase = 0
                        continue
                    if c == "]":
                        self._pos = p + 1
                        self._in_array = False
                        self._phase = 3
                        continue
                    out.finish(self._pos)
                    return
                if self.separator and buf.startswith(self.separator, p):
                    q = _WS.match(buf, p + len(self.separator)).end()  # type: ignore[union-attr]
                    if q >= n and not final:
                        return
                    if q < n and buf[q] == "{":
                        self._pos = q
                        self._phase = 0
                        continue
                    out.finish(self._pos)
                    return
                self._phase = 3
            # phase 3: optional end marker
            self._finish_after(buf, self._pos, out, final)
            return

    def _finish_after(self, buf: str, pos: int, out: ScanOutput, final: bool = True) -> None:
        em = self.end_marker
        if not em:
            out.finish(pos)
            return
        p = _WS.match(buf, pos).end()  # type: ignore[union-attr]
        if buf.startswith(em, p):
            out.finish(p + len(em))
        elif not final and em.startswith(buf[p:]):
            return  # maybe a partial end marker: wait
        else:
            out.finish(pos)


class JsonToolParser(ToolParser):
    """``json``: the output (or a part of it) is a JSON call object or an array of call objects."""

    name = "json"
    start_markers = ("{", "[")

    def new_scanner(self, marker: str) -> SectionScanner:
        return JsonCallsScanner(self, marker, include_marker=True)

    def has_tool_markers(self, text: str) -> bool:
        return "{" in text
