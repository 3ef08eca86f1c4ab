"""Shared pieces of the reasoning parsers: result types, the marker scanner and the parser base class.

Every parser is a sans-I/O state machine: ``feed(chunk) -> ReasoningDelta`` while text arrives,
``finish() -> ReasoningDelta`` once at the end of the stream, and ``parse(text) -> ReasoningResult``
for a whole output. ``parse`` is literally "feed the whole text into a fresh copy, then finish", so a
stream and a one-shot parse of the same output cannot disagree (the property tests check that any
chunking gives the same totals).

Whitespace policy (the same for every ``<think>``-style family, see ``trim_whitespace``): reasoning
text is stripped at both ends, and normal text loses the whitespace right after the end tag. Trailing
whitespace of the normal text is kept (SMG trims it in one-shot parsing only; keeping it makes
streaming and one-shot agree without holding back the end of every answer).

Other deliberate differences from SMG's ``BaseReasoningParser`` (chosen so that one-shot parsing and
any chunking of a stream agree, which SMG does not guarantee):

* Text before the start tag is normal text (SMG's one-shot path files it under reasoning).
* Only one reasoning block: after the end tag everything, later tags included, is normal text.
* A start tag is dropped only at the very start of the block (a redundant ``<think>`` after a
  prefill); a start tag in the middle of reasoning stays literal text.
* Tags split across chunks are held back (SMG only holds when the whole buffer is a tag prefix) and
  released at ``finish()`` as text of the current mode if they never complete.
* ``stream_reasoning=False`` releases the reasoning in one piece when its block ends (end tag, or
  ``finish()`` for a truncated block), in the same delta as the first normal text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: SMG's ``DEFAULT_MAX_BUFFER_SIZE``: 4 MiB. Counted in characters here (Python ``str``), not bytes.
MAX_BUFFER_SIZE = 4 * 1024 * 1024


class ReasoningBufferOverflow(ValueError):
    """Raised when a parser would have to hold more than ``max_buffer_size`` characters."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"reasoning parser buffer overflow: {size} characters held (limit {limit})")
        self.size = size
        self.limit = limit


@dataclass(slots=True, frozen=True)
class ReasoningResult:
    """Outcome of a one-shot parse: the reasoning and the visible (normal) text."""

    reasoning_text: str = ""
    normal_text: str = ""


@dataclass(slots=True, frozen=True)
class ReasoningDelta:
    """What one ``feed``/``finish`` call produced; both fields may be empty."""

    reasoning_text: str = ""
    normal_text: str = ""

    def __bool__(self) -> bool:
        return bool(self.reasoning_text or self.normal_text)


EMPTY_DELTA = ReasoningDelta()


@dataclass(slots=True, frozen=True)
class MarkerSet:
    """A fixed set of literal markers (special tokens) searched for in one parser mode."""

    markers: tuple[str, ...]
    first_chars: str = field(init=False)
    max_len: int = field(init=False)
    #: Two-character starts of all markers (None if a marker is one character long): lets the
    #: scanner skip a candidate such as ``<b`` in one set lookup instead of a test per marker.
    heads: frozenset[str] | None = field(init=False)

    def __post_init__(self) -> None:
        if any(not m for m in self.markers):
            raise ValueError("markers must be non-empty strings")
        firsts = "".join(sorted({m[0] for m in self.markers}))
        object.__setattr__(self, "first_chars", firsts)
        object.__setattr__(self, "max_len", max((len(m) for m in self.markers), default=0))
        heads = None if any(len(m) < 2 for m in self.markers) else frozenset(m[:2] for m in self.markers)
        object.__setattr__(self, "heads", heads)


NO_MARKERS = MarkerSet(())


class MarkerScanner:
    """Splits a stream into text runs and marker hits, holding back only a possible partial marker.

    The caller drives it with ``next(markers)`` and may change the marker set after every hit (each
    parser mode looks for different tokens). Text already handed out is never looked at again, and
    the kept tail is shorter than the longest marker, so a whole stream is scanned in O(n).
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = ""
        self._pos = 0

    def feed(self, chunk: str) -> None:
        """Append new text after the (short) held tail."""
        if self._pos:
            self._buf = self._buf[self._pos :] + chunk
            self._pos = 0
        else:
            self._buf += chunk

    @property
    def held(self) -> int:
        """Number of characters not yet handed out."""
        return len(self._buf) - self._pos

    def next(self, ms: MarkerSet) -> tuple[str, str | None] | None:
        """Return ``(text_before, marker)`` for the next marker, ``(text, None)`` for a run of plain
        text, or ``None`` when everything left could still be the start of a marker (or is empty)."""
        buf, pos = self._buf, self._pos
        n = len(buf)
        if pos >= n:
            return None
        if not ms.markers:
            self._pos = n
            return buf[pos:], None
        firsts = ms.first_chars
        heads = ms.heads
        i = _find_any(buf, firsts, pos)
        while i != -1:
            if heads is not None and i + 1 < n and buf[i : i + 2] not in heads:
                i = _find_any(buf, firsts, i + 1)
                continue
            for m in ms.markers:
                if buf.startswith(m, i):
                    self._pos = i + len(m)
                    return buf[pos:i], m
            if n - i < ms.max_len:
                rest = buf[i:]
                if any(m.startswith(rest) for m in ms.markers):
                    # Possible partial marker at the very end: hand out what precedes it, hold it.
                    self._pos = i
                    return (buf[pos:i], None) if i > pos else None
            i = _find_any(buf, firsts, i + 1)
        self._pos = n
        return buf[pos:], None

    def unread(self, count: int) -> None:
        """Give back the last ``count`` characters handed out (a marker the new mode does not use)."""
        self._pos -= count

    @property
    def idle(self) -> bool:
        """True when nothing is held (the next chunk can bypass the scanner)."""
        return self._pos == len(self._buf)

    def flush(self) -> str:
        """Return and forget the held tail (end of stream: it never became a marker)."""
        rest = self._buf[self._pos :]
        self._buf = ""
        self._pos = 0
        return rest


def _find_any(buf: str, chars: str, start: int) -> int:
    """Index of the first occurrence of any of ``chars`` in ``buf`` at or after ``start``, else -1."""
    if len(chars) == 1:
        return buf.find(chars, start)
    best = -1
    for c in chars:
        j = buf.find(c, start)
        if j != -1 and (best == -1 or j < best):
            best = j
    return best


def _contains_any(text: str, chars: str) -> bool:
    """True if any of ``chars`` occurs in ``text``."""
    if len(chars) == 1:
        return chars in text
    return any(c in text for c in chars)


class ReasoningParser:
    """Base class: the streaming/one-shot contract and the shared reasoning/normal text sinks.

    Subclasses describe a mode machine with four hooks: ``_markers()`` (the tokens the current mode
    looks for), ``_plain(text, r, n)`` (route text of the current mode), ``_on_marker(marker, r, n)``
    (a token of the current mode was seen) and ``_end(tail, r, n)`` (end of stream), plus ``_clone()``
    (a fresh, unfed copy with the same configuration). Sinks append to ``r`` (reasoning) and ``n``
    (normal text).
    """

    #: Registry name of the family (set by subclasses).
    name: str = "base"
    #: Strip whitespace at the reasoning boundaries (see the module docstring).
    trim_whitespace: bool = True

    def __init__(self, *, stream_reasoning: bool = True, max_buffer_size: int = MAX_BUFFER_SIZE) -> None:
        self.stream_reasoning = stream_reasoning
        self.max_buffer_size = max_buffer_size
        self._scanner = MarkerScanner()
        self._fed = False
        self._finished = False
        self._extra = 0  # characters a subclass holds outside the shared buffers
        # Reasoning sink state.
        self._reason_started = False  # a non-whitespace reasoning character was seen
        self._ws_hold = ""  # trailing reasoning whitespace, held until more reasoning text shows up
        self._acc: list[str] = []  # reasoning held back when stream_reasoning is off
        self._acc_len = 0
        # Normal sink state.
        self._lstrip_normal = False  # drop the whitespace right after the end of reasoning

    # ----------------------------------------------------------------- public API
    @property
    def in_reasoning(self) -> bool:
        """True while the parser is inside a reasoning block."""
        raise NotImplementedError

    def mark_reasoning_started(self) -> None:
        """The chat template already opened the reasoning block in the prompt (prefill)."""
        raise NotImplementedError

    def feed(self, chunk: str) -> ReasoningDelta:
        """Consume the next piece of model output and return what can be emitted safely now."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if not chunk:
            return EMPTY_DELTA
        self._fed = True
        r: list[str] = []
        n: list[str] = []
        scanner = self._scanner
        firsts = self._markers().first_chars
        # Fast path (most chunks): nothing held and no token of this mode can start in the chunk.
        if scanner._pos == len(scanner._buf) and (
            not firsts or (firsts not in chunk if len(firsts) == 1 else not _contains_any(chunk, firsts))
        ):
            self._plain(chunk, r, n)
        else:
            scanner.feed(chunk)
            self._consume(r, n)
        # The scanner itself only ever holds less than one marker; what can grow is held-back
        # reasoning, held whitespace and subclass state.
        if self._acc_len or self._extra or len(self._ws_hold) > 64:
            held = self._acc_len + len(self._ws_hold) + self._extra
            if held > self.max_buffer_size:
                raise ReasoningBufferOverflow(held, self.max_buffer_size)
        if r:
            return ReasoningDelta(r[0] if len(r) == 1 else "".join(r), "".join(n))
        if n:
            return ReasoningDelta("", n[0] if len(n) == 1 else "".join(n))
        return EMPTY_DELTA

    def finish(self) -> ReasoningDelta:
        """End of stream: flush a held partial tag as text of the current mode and any held reasoning."""
        if self._finished:
            return EMPTY_DELTA
        self._finished = True
        r: list[str] = []
        n: list[str] = []
        self._consume(r, n)
        tail = self._scanner.flush()
        self._end(tail, r, n)
        if not r and not n:
            return EMPTY_DELTA
        return ReasoningDelta("".join(r), "".join(n))

    def parse(self, text: str) -> ReasoningResult:
        """One-shot parse of a whole output (independent of this instance's streaming state)."""
        if len(text) > self.max_buffer_size:
            raise ReasoningBufferOverflow(len(text), self.max_buffer_size)
        p = self._clone()
        p.stream_reasoning = True  # the totals are identical either way; streaming avoids a copy
        a = p.feed(text)
        b = p.finish()
        return ReasoningResult(a.reasoning_text + b.reasoning_text, a.normal_text + b.normal_text)

    # ------------------------------------------------------- subclass interface
    def _markers(self) -> MarkerSet:
        raise NotImplementedError

    def _plain(self, text: str, r: list[str], n: list[str]) -> None:
        raise NotImplementedError

    def _on_marker(self, marker: str, r: list[str], n: list[str]) -> None:
        raise NotImplementedError

    def _end(self, tail: str, r: list[str], n: list[str]) -> None:
        raise NotImplementedError

    def _clone(self) -> ReasoningParser:
        raise NotImplementedError

    def _consume(self, r: list[str], n: list[str]) -> None:
        """Drain the scanner: route text runs, act on tokens, until only a partial token is left."""
        scanner = self._scanner
        while True:
            ev = scanner.next(self._markers())
            if ev is None:
                return
            text, marker = ev
            if text:
                self._plain(text, r, n)
            if marker is not None:
                # Routing the text before the token may have changed the mode (e.g. reasoning
                # started); a token the new mode does not look for is rescanned as text, so the
                # result cannot depend on where the chunk boundaries fell.
                if marker in self._markers().markers:
                    self._on_marker(marker, r, n)
                else:
                    scanner.unread(len(marker))

    # ---------------------------------------------------------------- sinks
    def _reason(self, text: str, r: list[str]) -> None:
        """Route reasoning text: trimmed at its start, trailing whitespace held, or accumulated."""
        if not text:
            return
        if self.trim_whitespace and not self._reason_started:
            text = text.lstrip()
            if not text:
                return
        self._reason_started = True
        if not self.stream_reasoning:
            self._acc.append(text)
            self._acc_len += len(text)
            return
        if not self.trim_whitespace:
            r.append(text)
            return
        body = text.rstrip()
        if not body:
            self._ws_hold += text
            return
        if self._ws_hold:
            r.append(self._ws_hold)
        r.append(body)
        self._ws_hold = text[len(body) :]

    def _close_reasoning(self, r: list[str]) -> None:
        """End of a reasoning block: drop trailing whitespace, release held-back reasoning."""
        if self._acc:
            joined = "".join(self._acc)
            r.append(joined.rstrip() if self.trim_whitespace else joined)
            self._acc.clear()
            self._acc_len = 0
        self._ws_hold = ""
        self._reason_started = False

    def _normal(self, text: str, n: list[str]) -> None:
        """Route normal text (optionally dropping whitespace right after a reasoning block)."""
        if not text:
            return
        if self._lstrip_normal:
            text = text.lstrip()
            if not text:
                return
            self._lstrip_normal = False
        n.append(text)


_PRE, _REASON, _POST = 0, 1, 2


class BaseReasoningParser(ReasoningParser):
    """The ``base`` family: one reasoning block delimited by configurable start/end tags.

    Modes: *before* reasoning (looking for the start tag; text before it is normal), *in* reasoning
    (looking for the end tag) and *after* (everything is normal text, tags included, verbatim).

    * ``starts_in_reasoning``: the output begins inside the block (the template opened it); a
      redundant start tag at the very beginning of the block is then dropped.
    * A missing end tag means the output was truncated: everything after the start is reasoning.
    * An end tag seen before any start (and not in reasoning) is plain text, as in SMG; call
      ``mark_reasoning_started()`` when the prompt prefilled the start tag.

    Fixed-tag families subclass this and only change the ``default_*`` class attributes.
    """

    name = "base"
    default_start_tag = "<think>"
    default_end_tag = "</think>"
    default_starts_in_reasoning = False

    def __init__(
        self,
        *,
        start_tag: str | None = None,
        end_tag: str | None = None,
        starts_in_reasoning: bool | None = None,
        stream_reasoning: bool = True,
        max_buffer_size: int = MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(stream_reasoning=stream_reasoning, max_buffer_size=max_buffer_size)
        start_tag = self.default_start_tag if start_tag is None else start_tag
        end_tag = self.default_end_tag if end_tag is None else end_tag
        if not start_tag or not end_tag:
            raise ValueError("start_tag and end_tag must be non-empty (use 'passthrough' for no parsing)")
        if start_tag == end_tag:
            raise ValueError("start_tag and end_tag must differ")
        self.start_tag = start_tag
        self.end_tag = end_tag
        self.starts_in_reasoning = (
            self.default_starts_in_reasoning if starts_in_reasoning is None else starts_in_reasoning
        )
        self._mode = _REASON if self.starts_in_reasoning else _PRE
        self._start_seen = False
        self._pre_markers = MarkerSet((start_tag,))
        self._open_markers = MarkerSet((end_tag, start_tag))  # in reasoning, start tag still droppable
        self._end_markers = MarkerSet((end_tag,))

    @property
    def in_reasoning(self) -> bool:
        return self._mode == _REASON

    def mark_reasoning_started(self) -> None:
        if self._mode == _PRE:
            self._mode = _REASON
            if not self._fed:
                self.starts_in_reasoning = True  # so parse() on this instance agrees

    def _clone(self) -> BaseReasoningParser:
        return type(self)(
            start_tag=self.start_tag,
            end_tag=self.end_tag,
            starts_in_reasoning=self.starts_in_reasoning,
            stream_reasoning=self.stream_reasoning,
            max_buffer_size=self.max_buffer_size,
        )

    def _markers(self) -> MarkerSet:
        mode = self._mode
        if mode == _POST:
            return NO_MARKERS
        if mode == _PRE:
            return self._pre_markers
        droppable = not self._start_seen and not self._reason_started
        return self._open_markers if droppable else self._end_markers

    def _plain(self, text: str, r: list[str], n: list[str]) -> None:
        if self._mode == _REASON:
            self._reason(text, r)
        else:
            self._normal(text, n)

    def _on_marker(self, marker: str, r: list[str], n: list[str]) -> None:
        if self._mode == _PRE:  # the start tag
            self._start_seen = True
            self._mode = _REASON
        elif marker == self.end_tag:
            self._close_reasoning(r)
            self._mode = _POST
            self._lstrip_normal = self.trim_whitespace
        else:  # a redundant start tag at the very start of the block: drop it
            self._start_seen = True

    def _end(self, tail: str, r: list[str], n: list[str]) -> None:
        if self._mode == _REASON:
            self._reason(tail, r)
            self._close_reasoning(r)
        else:
            self._normal(tail, n)
