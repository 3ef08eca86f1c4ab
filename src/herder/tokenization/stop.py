"""Stop sequences over streamed text (sans-I/O): the "jail" that never lets a stop string leak.

Text that could still become a stop string is held back until the next delta proves it cannot (or
`finish()` flushes it). A stop string triggers where it *ends* earliest in the text, so the result does not
depend on how the text was split into deltas; among stops ending at the same place the longest wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from herder.tokenization.detokenizer import IncrementalDetokenizer, _Decoder


@dataclass(frozen=True, slots=True)
class StopResult:
    """What to send now, and whether generation is over (`matched` = the stop string or token id)."""

    text: str
    stopped: bool = False
    matched: str | int | None = None

    @property
    def text_to_emit(self) -> str:
        return self.text


_EMPTY = StopResult("")


@dataclass(slots=True)
class StopSequenceDecoder:
    """Applies string stops and stop token ids to a stream of (text delta, token id) pairs.

    - `stop`: hidden stop strings (cut out of the output unless `no_stop_trim`);
    - `visible_stop`: stop strings kept in the output;
    - `stop_token_ids`: hidden stop tokens (their text is dropped unless `no_stop_trim`);
    - `visible_stop_token_ids`: stop tokens whose text is kept.
    """

    stop: Iterable[str] = ()
    stop_token_ids: Iterable[int] = ()
    no_stop_trim: bool = False
    visible_stop: Iterable[str] = ()
    visible_stop_token_ids: Iterable[int] = ()
    held: str = ""
    stopped: bool = False
    matched: str | int | None = None
    _strings: tuple[str, ...] = field(default=(), init=False)
    _visible: frozenset[str] = field(default=frozenset(), init=False)
    _chars: frozenset[str] = field(default=frozenset(), init=False)
    _hidden_ids: frozenset[int] = field(default=frozenset(), init=False)
    _visible_ids: frozenset[int] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        hidden = [s for s in self.stop if s]
        visible = [s for s in self.visible_stop if s]
        self._strings = tuple(dict.fromkeys(hidden + visible))
        self._chars = frozenset("".join(self._strings))
        self._visible = (
            frozenset(visible) - frozenset(hidden) if not self.no_stop_trim else frozenset(self._strings)
        )
        self._visible_ids = frozenset(self.visible_stop_token_ids)
        self._hidden_ids = frozenset(self.stop_token_ids) - self._visible_ids
        if self.no_stop_trim:
            self._visible_ids, self._hidden_ids = self._visible_ids | self._hidden_ids, frozenset()

    def feed(self, text_delta: str, token_id: int | None = None) -> StopResult:
        """Process the text of one step (and the token id that produced it, if known)."""
        if self.stopped:
            return StopResult("", True, self.matched)
        if token_id is not None:
            if token_id in self._hidden_ids:
                return self._stop(self._take_held(), token_id)
            if token_id in self._visible_ids:
                # Text before this token may still complete a stop string inside this delta.
                result = self._scan(text_delta)
                if result.stopped:
                    return result
                return self._stop(result.text + self._take_held(), token_id)
        return self._scan(text_delta)

    def finish(self) -> StopResult:
        """End of stream: flush held text (it never completed a stop string)."""
        if self.stopped:
            return StopResult("", True, self.matched)
        return StopResult(self._take_held(), False, None)

    def _take_held(self) -> str:
        text, self.held = self.held, ""
        return text

    def _stop(self, text: str, matched: str | int) -> StopResult:
        self.stopped, self.matched, self.held = True, matched, ""
        return StopResult(text, True, matched)

    def _scan(self, delta: str) -> StopResult:
        if not self._strings:
            return StopResult(delta) if delta else _EMPTY
        buf = self.held + delta
        # Earliest end wins; among equal ends the longest (earliest start).
        best: tuple[int, int, str] | None = None
        for s in self._strings:
            i = buf.find(s)
            if i >= 0:
                key = (i + len(s), i, s)
                if best is None or key[:2] < best[:2]:
                    best = key
        if best is not None:
            end, start, s = best
            return self._stop(buf[:end] if s in self._visible else buf[:start], s)
        hold = self._partial_suffix_len(buf)
        self.held = buf[len(buf) - hold :] if hold else ""
        out = buf[: len(buf) - hold]
        return StopResult(out) if out else _EMPTY

    def _partial_suffix_len(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of some stop string."""
        # Fast path: a partial match must end with the last character, which must occur in some stop string.
        if not buf or buf[-1] not in self._chars:
            return 0
        best = 0
        for s in self._strings:
            for n in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:n]):
                    best = n
                    break
        return best


@dataclass(slots=True)
class OutputDecoder:
    """Token ids -> text to send: an `IncrementalDetokenizer` feeding a `StopSequenceDecoder`, token by token
    (stop token ids are per token, and a stop inside a multi-token chunk must drop the rest)."""

    detokenizer: IncrementalDetokenizer
    stops: StopSequenceDecoder

    @classmethod
    def create(
        cls,
        tokenizer: _Decoder,
        *,
        skip_special_tokens: bool = True,
        stop: Iterable[str] = (),
        stop_token_ids: Iterable[int] = (),
        no_stop_trim: bool = False,
        visible_stop: Iterable[str] = (),
        visible_stop_token_ids: Iterable[int] = (),
    ) -> OutputDecoder:
        return cls(
            IncrementalDetokenizer(tokenizer, skip_special_tokens),
            StopSequenceDecoder(stop, stop_token_ids, no_stop_trim, visible_stop, visible_stop_token_ids),
        )

    def feed(self, token_ids: Iterable[int]) -> StopResult:
        """All text the ids release; `stopped` once a stop matched (later ids are ignored)."""
        parts: list[str] = []
        for tid in token_ids:
            r = self.stops.feed(self.detokenizer.feed(tid), tid)
            if r.text:
                parts.append(r.text)
            if r.stopped:
                return StopResult("".join(parts), True, r.matched)
        return StopResult("".join(parts))

    def finish(self) -> StopResult:
        """End of stream: text still held by the detokenizer and the stop jail."""
        if self.stops.stopped:
            return StopResult("", True, self.stops.matched)
        r = self.stops.feed(self.detokenizer.finish())
        if r.stopped:
            return r
        tail = self.stops.finish()
        return StopResult(r.text + tail.text)
