"""The request and reply objects of herder's HTTP server (`http.py`), and status-line helpers.

`Request` keeps the raw header block and looks headers up on demand; `Reply` writes a complete response or a
chunked stream to its connection (`HttpProtocol`), with backpressure hooks for a relaying proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herder.server.http import HttpProtocol

Headers = list[tuple[bytes, bytes]]

_REASONS: dict[int, bytes] = {
    100: b"Continue", 200: b"OK", 201: b"Created", 202: b"Accepted", 204: b"No Content",
    206: b"Partial Content", 301: b"Moved Permanently", 302: b"Found", 304: b"Not Modified",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict", 411: b"Length Required",
    413: b"Payload Too Large", 415: b"Unsupported Media Type", 417: b"Expectation Failed",
    422: b"Unprocessable Entity", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    499: b"Client Closed Request", 500: b"Internal Server Error", 501: b"Not Implemented",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}
_STATUS_LINES: dict[int, bytes] = {}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, b"Unknown").decode()


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n`, cached per status."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
        _STATUS_LINES[status] = line
    return line


# Above this size a chunk is written with writelines (one vectored write) instead of being copied into one buffer.
_GATHER_BYTES = 4096


class ClientDisconnected(Exception):
    """The client closed the connection before the response was complete."""


class RawHead:
    """Header access over a raw header block (`raw_head`: start line and header lines, CRLF-separated), for
    requests and upstream responses alike: the lowercase copy, single lookups and the parsed list, each computed
    on first use."""

    __slots__ = ("_headers", "_lower", "raw_head")
    raw_head: bytes
    _lower: bytes | None
    _headers: Headers | None

    @property
    def lower_head(self) -> bytes:
        lower = self._lower
        if lower is None:
            lower = self._lower = self.raw_head.lower()
        return lower

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lowercase), or None."""
        return header_value(self.raw_head, self.lower_head, name)

    @property
    def headers(self) -> Headers:
        """Every header as (lowercase name, value), in order, parsed on first use."""
        headers = self._headers
        if headers is None:
            headers = self._headers = parse_header_lines(self.raw_head)
        return headers


class Request(RawHead):
    """One parsed HTTP request.

    Headers are kept as the raw header block (`raw_head`, request line included): a Python callback per header
    from the parser cost ~0.5 µs each (8 µs for an SDK request), while most requests need three or four of them.
    `header(name)` searches the block (lowercase `name`); `headers` parses every line lazily, on first use.
    """

    __slots__ = ("_state", "body", "client", "http_version", "keep_alive", "method", "notable", "path", "query")

    def __init__(self, method: bytes, path: str, query: bytes, raw_head: bytes, body: bytes,
                 http_version: str, keep_alive: bool, client: tuple[str, int] | None,
                 lower_head: bytes | None = None, notable: bool = True) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.raw_head = raw_head
        self.body = body
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.client = client
        self._state: dict[str, Any] | None = None
        self._lower = lower_head
        self._headers: Headers | None = None
        # False when the head has none of the server's notable headers (`HttpServer.notable`): whoever looks for
        # one of them may skip the search. True when unknown.
        self.notable = notable

    @property
    def state(self) -> dict[str, Any]:
        """Per-request scratch space for handlers (e.g. path parameters), created on first use."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state



def header_value(raw: bytes, lower: bytes, name: bytes) -> bytes | None:
    """First value of `name` in a raw header block (CRLF lines; `lower` = raw.lower())."""
    key = b"\r\n" + name + b":"
    at = lower.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = raw.find(b"\r\n", start)
    return (raw[start:] if end < 0 else raw[start:end]).strip(b" \t")


def parse_header_lines(raw: bytes) -> Headers:
    out: Headers = []
    for line in raw.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name.strip().lower(), value.strip(b" \t")))
    return out


class Reply:
    """Writes the response to one request; created by the protocol, handed to the handler."""

    __slots__ = ("_done", "_proto", "_streaming", "closed", "extra_headers", "head_only", "keep_alive",
                 "on_close", "on_pause", "on_resume", "started", "status")

    def __init__(self, proto: HttpProtocol, keep_alive: bool, head_only: bool = False) -> None:
        self._proto = proto
        self.head_only = head_only  # HEAD: headers as for GET, never a body
        self.keep_alive = keep_alive
        self.started = False
        self.closed = False
        self._done = False
        self._streaming = False
        self.status = 0
        # Headers every response to this request carries (e.g. x-request-id), set by middleware.
        self.extra_headers: Headers = []
        # Backpressure hooks: a proxy sets these to pause/resume its upstream socket.
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        # Called once if the client disconnects before the response is complete.
        self.on_close: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        return self._done

    def _head(self, status: int, headers: Headers | None, content_type: bytes | None,
              header_block: bytes) -> bytes:
        """The status line and header lines, CRLF-terminated (the blank line is the caller's): one format."""
        lines = b""
        for pair in self.extra_headers:
            lines += b"%b: %b\r\n" % pair
        if headers:
            for pair in headers:
                lines += b"%b: %b\r\n" % pair
        if not self.keep_alive:
            header_block += b"connection: close\r\n"
        if content_type is None:
            return b"%b%b%b" % (status_line(status), lines, header_block)
        return b"%bcontent-type: %b\r\n%b%b" % (status_line(status), content_type, lines, header_block)

    def send(self, status: int, body: bytes, headers: Headers | None = None,
             content_type: bytes | None = b"application/json", header_block: bytes = b"") -> None:
        """Write a complete response with Content-Length. `header_block`: more header lines, CRLF-terminated
        (a relay passes the worker's lines through without splitting them into tuples)."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        self._done = True
        if self.closed:
            self._proto._reply_finished(self)
            return
        head = self._head(status, headers, content_type, header_block)
        self._proto.transport.write(  # type: ignore[union-attr]
            b"%bcontent-length: %d\r\n\r\n%b" % (head, len(body), b"" if self.head_only else body))
        self._proto._reply_finished(self)

    def start_stream(self, status: int = 200, headers: Headers | None = None,
                     content_type: bytes | None = b"text/event-stream", header_block: bytes = b"",
                     first_chunk: bytes = b"", end: bool = False) -> None:
        """Send the head of a streamed response (chunked on HTTP/1.1, close-delimited on HTTP/1.0), and with
        `first_chunk` the first chunk in the same write (one syscall, one packet to the client); with `end`
        the whole stream (head, chunk, terminator) in that write."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        self._streaming = True
        if self.closed:
            if end:
                self._done = True
                self._proto._reply_finished(self)
            return
        parts = [self._head(status, headers, content_type, header_block)]
        if self.head_only:
            parts.append(b"\r\n")
        elif self._proto.http11:
            parts.append(b"transfer-encoding: chunked\r\n\r\n")
        else:
            self.keep_alive = False
            parts.append(b"\r\n")
        http11 = self._proto.http11
        if first_chunk and not self.head_only:
            if http11:
                parts.append(b"%x\r\n" % len(first_chunk))
                parts.append(first_chunk)
                parts.append(b"\r\n")
            else:
                parts.append(first_chunk)
        if end:
            self._done = True
            if http11 and not self.head_only:
                parts.append(b"0\r\n\r\n")
        transport = self._proto.transport
        if len(first_chunk) > _GATHER_BYTES:
            transport.writelines(parts)  # type: ignore[union-attr]  # one vectored write, no copy of the data
        else:
            transport.write(b"".join(parts))  # type: ignore[union-attr]
        if end:
            self._proto._reply_finished(self)

    def write_nowait(self, data: bytes) -> None:
        """Write one chunk without waiting; the caller handles backpressure through on_pause/on_resume."""
        if self.closed or not data or self.head_only:
            return
        transport = self._proto.transport
        if not self._proto.http11:
            transport.write(data)  # type: ignore[union-attr]
        elif len(data) > _GATHER_BYTES:
            transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))  # type: ignore[union-attr]
        else:
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))  # type: ignore[union-attr]

    async def write(self, data: bytes) -> None:
        """Write one chunk; waits while the client is not reading. Raises ClientDisconnected."""
        if self.closed:
            raise ClientDisconnected()
        self.write_nowait(data)
        if self._proto.write_paused:
            await self._proto.wait_writable()
            if self.closed:
                raise ClientDisconnected()

    def end_stream(self, trailer: bytes = b"") -> None:
        """Finish a streamed response (optionally with one last chunk)."""
        if self._done:
            return
        self._done = True
        if not self.closed and not self.head_only:
            transport = self._proto.transport
            if self._proto.http11:
                if trailer:
                    transport.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(trailer), trailer))  # type: ignore[union-attr]
                else:
                    transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
            elif trailer:
                transport.write(trailer)  # type: ignore[union-attr]
        self._proto._reply_finished(self)

    def abort(self) -> None:
        """Drop the connection (a response cannot be completed cleanly)."""
        self._done = True
        if not self.closed and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto._reply_finished(self)

    async def wait_closed(self) -> None:
        """Wait until the client disconnects."""
        if self.closed:
            return
        await self._proto.wait_connection_lost()
