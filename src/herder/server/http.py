"""herder's HTTP/1.1 server: `asyncio.Protocol` + the httptools (llhttp) parser, no framework.

One `HttpProtocol` per client connection parses requests, queues pipelined ones, and runs the handler for one
request at a time. A handler gets a `Request` (raw bytes, parsed once) and a `Reply` that writes either a complete
response (`send`) or a chunked stream (`start_stream` / `write` / `end_stream`) with backpressure: `write` waits
while the client's socket buffer is full, and `Reply.on_pause` / `on_resume` hooks let a proxy pause its upstream
socket instead (no buffering grows without bound).

Edge cases handled here, not in handlers: body-size limit (413 before reading the body when Content-Length says
so), Content-Length together with Transfer-Encoding (llhttp rejects it: 400), `Expect: 100-continue`, HTTP/1.0
and `Connection: close`, pipelining, header-read timeout against slow clients (408), idle keep-alive timeout,
malformed requests (400) and clients that vanish mid-response.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from time import monotonic

import httptools

from herder.http1 import OneMessage, keep_alive
from herder.server.errors import error_body
from herder.server.messages import (
    ClientDisconnected,
    Reply,
    Request,
    header_value,
    parse_header_lines,
    reason_phrase,
    status_line,
)

log = logging.getLogger("herder.server")

Headers = list[tuple[bytes, bytes]]
_MAX_HEAD_BYTES = 64 * 1024

__all__ = ["ClientDisconnected", "Handler", "HttpProtocol", "HttpServer", "Reply", "Request", "header_value",
           "parse_header_lines", "reason_phrase", "status_line"]

# A handler answers through `reply`, either right away or from callbacks it arranged (returns None), or returns an
# awaitable the server runs as a task (every `async def` handler does).
Handler = Callable[[Request, Reply], Awaitable[None] | None]


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._fast = OneMessage()
        self.http11 = True
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._lost_waiters: list[asyncio.Future[None]] = []
        self._client: tuple[str, int] | None = None
        # Per-request parse state.
        self._url = b""
        self._raw_head = b""
        self._lower = b""
        self._version = "1.1"
        # Raw bytes of the message head being parsed: the chunks since the message began, and where in the first
        # chunk it began (-1 = began after an earlier message in the same chunk; found by its request line).
        self._head_bufs: list[bytes] = []
        self._head_start = 0
        self._in_head = False
        self._chunk = b""
        self._chunk_fresh = False
        self._stream_pos = 0  # bytes received on this connection before the current chunk ends
        self._chunk_base = 0
        self._head_base = 0
        self._head_end_abs = 0
        self._next_msg_at = -1  # absolute offset where the next pipelined message starts, when known
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._rejected = False
        self._in_message = False
        # Requests parsed but not yet answered (pipelining), and the one being answered.
        self._queue: deque[Request] = deque()
        self._current: Reply | None = None
        self._task: asyncio.Task[None] | None = None
        # Header-read / idle deadline (monotonic seconds, 0 = none), checked by the server's sweeper: setting a
        # float per request is far cheaper than a call_later + cancel pair.
        self.deadline = 0.0
        self._closing = False
        self._deferred_reject: tuple[int, str, str] | None = None

    # -- connection lifecycle -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self._client = (peer[0], peer[1])
        self._arm_timer(self.server.header_read_timeout)
        if self.server.on_connection_change is not None:
            self.server.on_connection_change(1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.deadline = 0.0
        self.transport = None
        reply = self._current
        if reply is not None:
            reply.closed = True
            if reply.on_close is not None:
                reply.on_close()
        self.write_paused = False
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        for fut in self._lost_waiters:
            if not fut.done():
                fut.set_result(None)
        self._lost_waiters.clear()
        self._queue.clear()
        if self.server.on_connection_change is not None:
            self.server.on_connection_change(-1)

    def pause_writing(self) -> None:
        self.write_paused = True
        reply = self._current
        if reply is not None and reply.on_pause is not None:
            reply.on_pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        reply = self._current
        if reply is not None and reply.on_resume is not None:
            reply.on_resume()
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()

    async def wait_writable(self) -> None:
        if not self.write_paused or self.transport is None:
            return
        fut = self.loop.create_future()
        self._drain_waiters.append(fut)
        await fut

    async def wait_connection_lost(self) -> None:
        if self.transport is None:
            return
        fut = self.loop.create_future()
        self._lost_waiters.append(fut)
        await fut

    def _arm_timer(self, seconds: float) -> None:
        self.deadline = monotonic() + seconds if seconds > 0 else 0.0

    def _on_timeout(self) -> None:
        self.deadline = 0.0
        if self.transport is None or self._current is not None:
            return
        if self._in_message:
            # Slow client: headers or body did not arrive in time.
            self._reject(408, "request_timeout", "Timed out reading the request", close=True)
        else:
            self.transport.close()  # idle keep-alive connection

    # -- parsing ----------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._in_message and self._current is None and not self._queue and data[:1] != b"\r":
            # Idle at a message boundary: a read that is exactly one request skips the parser's Python callbacks.
            # Otherwise the same bytes go to the full parser below, from the same boundary.
            fast = self._fast
            if fast.feed(data) and self._serve_fast(data, fast):
                return
        self._chunk = data
        self._chunk_fresh = not self._in_message  # this chunk starts at a message boundary
        self._chunk_base = self._stream_pos
        self._stream_pos += len(data)
        if self._in_head:
            self._head_bufs.append(data)
            if sum(map(len, self._head_bufs)) > _MAX_HEAD_BYTES:
                self._reject(431, "headers_too_large", "Request headers are too large", close=True)
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "invalid_request", "Protocol upgrades are not supported", close=True)
        except httptools.HttpParserError as exc:
            if not self._rejected:
                self._reject(400, "invalid_request", f"Malformed HTTP request: {exc}", close=True)
            else:
                self._close_after_reply()

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._url = b""
        self._head_base = self._chunk_base
        if self._chunk_fresh:
            self._head_start = 0
            self._chunk_fresh = False
        elif self._next_msg_at >= self._chunk_base:
            # Pipelined after a Content-Length message in this chunk: we know exactly where it ends.
            self._head_start = self._next_msg_at - self._chunk_base
        else:
            self._head_start = -1  # after a chunked body: found by its request line
        self._head_bufs = [self._chunk]
        self._body_parts = []
        self._body_size = 0
        self._rejected = False
        if self._current is None:
            timeout = self.server.header_read_timeout
            self.deadline = monotonic() + timeout if timeout > 0 else 0.0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > 65536:
            raise httptools.HttpParserError("URL too long")

    def _locate_head(self) -> bytes:
        """The raw head (request line + header lines, without the final blank line) of the current message."""
        joined = self._head_bufs[0] if len(self._head_bufs) == 1 else b"".join(self._head_bufs)
        start = self._head_start
        if start < 0:
            # Pipelined after another message in the same chunk: find this message's request line.
            # Only after a chunked body (whose framing we do not count): the first matching request line after
            # the previous head. A body that imitates a request line can only confuse its own sender's next
            # request on this connection, never another client's.
            line = self.parser.get_method() + b" " + self._url + b" HTTP/"
            start = max(joined.find(line, max(0, self._head_end_abs - self._head_base)), 0)
        end = joined.find(b"\r\n\r\n", start)
        if end < 0:
            end = len(joined)
        self._head_end_abs = self._head_base + end + 4
        return joined[start:end]

    def on_headers_complete(self) -> None:
        self._in_head = False
        raw = self._locate_head()
        self._head_bufs = []
        self._raw_head = raw
        if len(raw) > _MAX_HEAD_BYTES:
            self._reject(431, "headers_too_large", "Request headers are too large", close=True)
            return
        if self._current is None and not self._queue and self.deadline:
            # Body reads get the header timeout again (slow uploads), not unlimited time.
            self.deadline = monotonic() + self.server.header_read_timeout
        version = self._version = self.parser.get_http_version()
        self.http11 = version == "1.1"
        # `lower.find(x) >= 0` rather than `x in lower` on the hot path: CPython 3.11's bytes.__contains__ first
        # tries its operand as an integer and builds (then discards) a TypeError, twice the cost of a find.
        lower = self._lower = raw.lower()
        length_raw = header_value(raw, lower, b"content-length")
        expect = header_value(raw, lower, b"expect") if lower.find(b"\r\nexpect") >= 0 else None
        limit = self.server.max_body_size
        length = 0
        if length_raw is not None:
            try:
                length = int(length_raw)
            except ValueError:
                length = -1
        chunked = lower.find(b"\r\ntransfer-encoding:") >= 0
        self._next_msg_at = -1 if chunked or length < 0 else self._head_end_abs + length
        if length_raw is not None and length > limit:
            self._reject(413, "payload_too_large",
                         f"Request body of {length} bytes exceeds the limit of {limit} bytes", close=True)
            return
        if expect is not None:
            if expect.lower() == b"100-continue":
                if self.transport is not None and self._current is None:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:
                self._reject(417, "expectation_failed", "Unsupported Expect header", close=True)

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_size += len(body)
        if self._body_size > self.server.max_body_size:
            self._reject(413, "payload_too_large",
                         f"Request body exceeds the limit of {self.server.max_body_size} bytes", close=True)
            return
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._rejected:
            return
        path, query = _split_target(self._url)
        parts = self._body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._body_parts = []
        parser = self.parser
        request = Request(parser.get_method(), path, query, self._raw_head, body, self._version,
                          parser.should_keep_alive(), self._client, self._lower)
        self._queue.append(request)
        if self._current is None:
            self._start_next()
        elif len(self._queue) > 16 and self.transport is not None:
            self.transport.pause_reading()  # a client pipelining too far ahead waits

    def _serve_fast(self, data: bytes, fast: OneMessage) -> bool:
        """Answer the one request `fast` parsed from `data`; False leaves it to the full parser (limits, Expect,
        HTTP/1.0 and other cases that need its handling)."""
        parser = fast.parser
        version = parser.get_http_version()
        parts = fast.body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        end = data.find(b"\r\n\r\n")
        server = self.server
        if end < 0 or end > _MAX_HEAD_BYTES or version != "1.1" or len(body) > server.max_body_size:
            return False
        raw = data[:end]
        lower = raw.lower()
        # One search tells whether any header needs a look (Expect, Connection, the handler's notable ones).
        notable = server.notable.search(lower) is not None
        if notable and lower.find(b"\r\nexpect") >= 0:
            return False
        parts = fast.url
        url = parts[0] if len(parts) == 1 else b"".join(parts)
        target = _TARGETS.get(url)
        if target is None:
            target = _split_target(url)
            if len(_TARGETS) < 256 and len(url) < 128 and not target[1]:
                _TARGETS[url] = target  # the handful of routes clients call, not their query strings
        self._stream_pos += len(data)
        self.http11 = True
        self._dispatch(Request(parser.get_method(), target[0], target[1], raw, body, version,
                               not notable or keep_alive(version, lower), self._client, lower, notable))
        return True

    # -- dispatch ---------------------------------------------------------------------------------------------
    def _start_next(self) -> None:
        if not self._queue or self.transport is None:
            return
        self._dispatch(self._queue.popleft())

    def _dispatch(self, request: Request) -> None:
        self.deadline = 0.0
        reply = Reply(self, request.keep_alive and not self.server.draining, request.method == b"HEAD")
        self._current = reply
        try:
            pending = self.server.handler(request, reply)
        except Exception:
            _handler_failed(request, reply)
            return
        if pending is not None:
            self._task = self.loop.create_task(self._run(pending, request, reply))

    async def _run(self, pending: Awaitable[None], request: Request, reply: Reply) -> None:
        try:
            await pending
        except ClientDisconnected:
            pass
        except Exception:
            _handler_failed(request, reply)
        finally:
            if not reply.done:
                if reply.started:
                    reply.end_stream()
                else:
                    reply.send(500, error_body("Handler produced no response", "internal_error", 500))

    def _reply_finished(self, reply: Reply) -> None:
        if reply is not self._current:
            return
        self._current = None
        self._task = None
        transport = self.transport
        if transport is None:
            return
        if self._queue:
            if not reply.keep_alive:
                self._close_after_reply()
                return
            if self._deferred_reject is None:
                transport.resume_reading()
            self._start_next()
        elif self._deferred_reject is not None:
            self._write_reject(*self._deferred_reject)
            self._deferred_reject = None
            transport.close()
        elif not reply.keep_alive:
            self._close_after_reply()
        else:
            self._arm_timer(self.server.idle_timeout)

    def _close_after_reply(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _reject(self, status: int, code: str, message: str, *, close: bool) -> None:
        """Answer a request the handler never sees (parse error, too large, timeout)."""
        self._rejected = True
        transport = self.transport
        if transport is None:
            return
        if self._current is not None or self._queue:
            # Earlier requests on this connection are still being answered: answer them first, then this error,
            # then close (responses must stay in order). Read nothing more meanwhile.
            self._closing = True
            self._deferred_reject = (status, code, message)
            transport.pause_reading()
            return
        self._write_reject(status, code, message)
        if close:
            self._closing = True
            transport.close()

    def _write_reject(self, status: int, code: str, message: str) -> None:
        transport = self.transport
        if transport is None:
            return
        body = error_body(message, code, status)
        head = status_line(status) + (
            b"content-type: application/json\r\nx-smg-error-code: %b\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (code.encode(), len(body))
        )
        transport.write(head + body)


_TARGETS: dict[bytes, tuple[str, bytes]] = {}  # request target -> (path, query), for targets without a query


def _split_target(url: bytes) -> tuple[str, bytes]:
    """A request target's path (ASCII, latin-1 if it is not) and its query bytes (without the `?`)."""
    qpos = url.find(b"?")
    raw_path, query = (url[:qpos], url[qpos + 1 :]) if qpos >= 0 else (url, b"")
    try:
        return raw_path.decode("ascii"), query
    except UnicodeDecodeError:
        return raw_path.decode("latin-1"), query


def _handler_failed(request: Request, reply: Reply) -> None:
    """A handler raised (a bug): log it and answer 500, or cut a response that already started."""
    log.exception("unhandled error in handler for %s", request.path)
    if not reply.started:
        reply.send(500, error_body("Internal server error", "internal_error", 500),
                   headers=[(b"x-smg-error-code", b"internal_error")])
    elif not reply.done:
        reply.abort()


class HttpServer:
    """Listens on one address and serves every connection with `handler`."""

    def __init__(self, handler: Handler, *, max_body_size: int = 512 * 2**20,
                 header_read_timeout: float = 30.0, idle_timeout: float = 90.0,
                 on_connection_change: Callable[[int], None] | None = None,
                 notable_headers: Iterable[bytes] = ()) -> None:
        """`notable_headers`: lowercase header names (or name prefixes) the handler looks for; a request whose
        head has none of them (nor Expect or Connection) arrives with `request.notable` False."""
        self.handler = handler
        names = sorted({b"expect", b"connection", *notable_headers})
        self.notable = re.compile(b"\r\n(?:" + b"|".join(re.escape(name) for name in names) + b")")
        self.max_body_size = max_body_size
        self.header_read_timeout = header_read_timeout
        self.idle_timeout = idle_timeout
        self.on_connection_change = on_connection_change
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self.port = 0
        self.host = ""
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop = asyncio.get_event_loop()

    async def start(self, host: str, port: int, *, reuse_port: bool = False,
                    sock: socket.socket | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        if sock is not None:
            server = await self.loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=2048)
        else:
            server = await self.loop.create_server(lambda: HttpProtocol(self), host, port,
                                                   reuse_port=reuse_port or None, backlog=2048)
        self._server = server
        sockname = server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self._sweeper = self.loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Fire connection deadlines (slow headers, idle keep-alive) at a resolution of a quarter timeout."""
        limits = [t for t in (self.header_read_timeout, self.idle_timeout) if t > 0]
        tick = max(0.02, min(1.0, *(t / 4 for t in limits))) if limits else 1.0
        while True:
            await asyncio.sleep(tick)
            now = monotonic()
            for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
                conn._on_timeout()

    def in_flight(self) -> int:
        """Requests being answered right now."""
        return sum(1 for conn in self.connections if conn._current is not None)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; wait up to `grace` seconds for in-flight responses; then close every connection."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        deadline = self.loop.time() + grace
        while grace > 0 and self.in_flight() and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.close_all_connections()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def close_all_connections(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
