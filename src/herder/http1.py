"""llhttp without Python callbacks: parsers whose callbacks are C callables (list appends).

httptools (llhttp) parses everything herder receives. A Python callback per parser event (begin, url, headers
complete, each body part, complete) costs more than the rest of a request's head handling, so:

- `OneMessage` (server side): most requests arrive as one whole message in one read. Such a read goes to a
  parser with C-callable callbacks, so llhttp still validates and frames everything, and `feed` reports whether
  the read held exactly one complete message; the caller then reads method, URL, body and version from the
  parser and the lists. Anything else (a message spanning reads, pipelining, a parse error, an upgrade) returns
  False; the parser is replaced (its state is unknown) and the caller feeds the same read to its full parser
  from the same message boundary, which handles limits, `Expect`, pipelining and timeouts.
- `ParserEvents` (upstream side): one response parser per connection records what each `feed_data` saw (head
  complete, body parts, message complete); the connection handles them once per read.

Sans-I/O: bytes in, fields out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import httptools


def keep_alive(version: str, lower_head: bytes) -> bool:
    """Whether the connection stays open after this message: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only
    with `Connection: keep-alive` (llhttp's own flag is reset once a message completes)."""
    at = lower_head.find(b"\r\nconnection:")
    if at < 0:
        return version == "1.1"
    end = lower_head.find(b"\r\n", at + 13)
    value = lower_head[at + 13 : end if end >= 0 else len(lower_head)]
    if version == "1.1":
        return value.find(b"close") < 0
    return value.find(b"keep-alive") >= 0


class _Callbacks:
    """What httptools calls: attributes set per instance to bound C methods, so no Python frame runs."""

    __slots__ = ("on_body", "on_message_begin", "on_message_complete", "on_url")

    def __init__(self, begin: Callable[[], None], complete: Callable[[], None], body: Callable[[bytes], None],
                 url: Callable[[bytes], None]) -> None:
        self.on_message_begin = begin
        self.on_message_complete = complete
        self.on_body = body
        self.on_url = url


class ParserEvents:
    """What a parser with C-callable callbacks saw during one `feed_data`: whether a head completed, the body
    parts, whether a message completed. The owner reads and clears the lists after each feed (the response side
    of the upstream pool: Python runs once per read instead of once per parser event)."""

    __slots__ = ("bodies", "completed", "headers_done")

    def __init__(self) -> None:
        self.headers_done: list[None] = []
        self.bodies: list[bytes] = []
        self.completed: list[None] = []

    def clear(self) -> None:
        self.headers_done.clear()
        self.bodies.clear()
        self.completed.clear()

    def response_parser(self) -> httptools.HttpResponseParser:
        return httptools.HttpResponseParser(_EventCallbacks(self))


class _EventCallbacks:
    __slots__ = ("on_body", "on_headers_complete", "on_message_complete")

    def __init__(self, events: ParserEvents) -> None:
        self.on_headers_complete = partial(events.headers_done.append, None)
        self.on_body = events.bodies.append
        self.on_message_complete = partial(events.completed.append, None)


_ONE_MESSAGE = [1, 2]  # what `OneMessage`'s marks read after exactly one message: begun, completed


class OneMessage:
    """A reusable llhttp request parser for reads that hold exactly one message."""

    __slots__ = ("_marks", "body", "parser", "url")

    def __init__(self) -> None:
        self._marks: list[int] = []  # 1 per message begun, 2 per message completed, in order
        self.url: list[bytes] = []
        self.body: list[bytes] = []
        self.parser = self._new_parser()

    def _new_parser(self) -> httptools.HttpRequestParser:
        begin = partial(self._marks.append, 1)
        complete = partial(self._marks.append, 2)
        return httptools.HttpRequestParser(_Callbacks(begin, complete, self.body.append, self.url.append))

    def feed(self, data: bytes) -> bool:
        """Parse `data` (which starts at a message boundary): True when it was exactly one complete message
        and nothing more; then `parser` (method, version), `url` and `body` (lists of parts) describe it until
        the next `feed`."""
        marks = self._marks
        marks.clear()
        self.url.clear()
        self.body.clear()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.parser = self._new_parser()
            return False
        if marks == _ONE_MESSAGE:
            return True
        self.parser = self._new_parser()  # mid-message or a second message begun: state the caller cannot use
        return False
