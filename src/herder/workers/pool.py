"""Keep-alive HTTP/1.1 connection pool to one worker, on `asyncio.Protocol` + the httptools response parser.

State is explicit: a connection is `idle` (in the pool's deque), `busy` (carrying one exchange), or closed. An
exchange is one request/response whose events go to its `listener` (`ExchangeListener`): `on_head` once the
response head arrived, `on_data` per socket read of a streamed body (so events that arrive together leave
together), `on_end` at the end of the message, `on_error` on a transport failure. No future or task per request:
the HTTP router's proxy calls are listeners themselves (`UpstreamPool.send`). `UpstreamPool.request` wraps the
same machinery in futures for callers that prefer `await` (PD legs, probes, admin calls).

A non-streamed body (the response has a Content-Length) is collected in the exchange and delivered with `on_end`;
anything else (chunked, close-delimited) is a stream. Response headers are kept as the raw head block and looked
up on demand (no parser callback per header). Backpressure: the relay calls `pause_reading()` /
`resume_reading()` on the exchange.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Protocol, cast

import httptools

from herder.http1 import ParserEvents, keep_alive
from herder.server.messages import RawHead
from herder.workers.deadlines import DeadlineSweeper

Headers = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """Transport failure talking to a worker. `before_response` means no response byte arrived."""

    def __init__(self, message: str, *, before_response: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response
        self.timeout = timeout


class ExchangeListener(Protocol):
    """Receives one exchange's events (called from the connection's callbacks, never from inside the parser)."""

    def on_head(self, ex: BaseExchange) -> None: ...

    def on_data(self, ex: BaseExchange, data: bytes) -> None: ...

    def on_end(self, ex: BaseExchange) -> None: ...

    def on_error(self, ex: BaseExchange, err: UpstreamError) -> None: ...


class BaseExchange(RawHead):
    """One upstream request and its response (its head read through `RawHead`)."""

    __slots__ = ("_connecting", "_head_bufs", "body_parts", "complete", "conn", "data", "got_bytes", "head_done",
                 "listener", "reused", "status", "streaming")

    def __init__(self, data: bytes, listener: ExchangeListener | None) -> None:
        self.data = data  # the serialized request (kept for one transparent resend on a stale connection)
        self.listener = listener
        self.status = 0
        self.raw_head = b""  # status line + header lines, without the blank line
        self._lower: bytes | None = None
        self._headers: Headers | None = None
        self.head_done = False
        self.complete = False
        self.got_bytes = False
        self.streaming = False
        self.reused = False
        self.body_parts: list[bytes] = []
        self._head_bufs: list[bytes] | None = None  # earlier reads of a head that spans several
        self._connecting: asyncio.Task[None] | None = None
        self.conn: UpstreamConnection | None = None

    def body(self) -> bytes:
        parts = self.body_parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pause_reading(self) -> None:
        conn = self.conn
        if conn is not None and conn.exchange is self and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_reading(self) -> None:
        conn = self.conn
        if conn is not None and conn.exchange is self and conn.transport is not None:
            conn.transport.resume_reading()

    def abort(self) -> None:
        """Close the upstream connection now (client gone, timeout); the worker sees the disconnect. The listener
        gets `on_error` (once the connection is gone). A complete exchange has nothing to abort: its connection
        may already carry another request."""
        if self.complete:
            return
        self.reused = False  # an aborted exchange is never resent on a fresh connection
        task = self._connecting
        if task is not None:
            task.cancel()
            self.fail(UpstreamError("request abandoned while connecting", before_response=True))
            return
        conn = self.conn
        if conn is not None and conn.exchange is self:
            conn.close()

    def fail(self, err: UpstreamError) -> None:
        listener = self.listener
        if listener is not None and not self.complete:
            self.listener = None
            listener.on_error(self, err)


class Exchange(BaseExchange):
    """An exchange awaited through futures: `head` resolves when the response head arrived, `done` at the end
    of the message; body bytes go to `sink` (set with `set_sink`; earlier bytes are delivered first)."""

    __slots__ = ("_pending", "deadline", "done", "head", "sink")

    def __init__(self, loop: asyncio.AbstractEventLoop, data: bytes = b"") -> None:
        super().__init__(data, _FUTURES)
        self.head: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.sink: Callable[[bytes], None] | None = None
        self._pending: list[bytes] = []
        self.deadline = 0.0  # for the response head; see DeadlineSweeper

    def expire(self) -> None:
        """The head did not arrive in time: fail it and close the connection (the worker sees the abort)."""
        _head_timeout(self)

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        """Deliver body bytes to `sink` from now on (bytes that arrived earlier are delivered first)."""
        self.sink = sink
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            sink(data)

    def hand_over(self, listener: ExchangeListener) -> None:
        """From now on `listener` gets this exchange's events instead of the futures (its head has arrived):
        body bytes that came earlier first, then the end or the failure if either already happened."""
        done = self.done
        if not done.done():
            self.listener = listener
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            listener.on_data(self, data)
        if done.done() and not done.cancelled():
            err = done.exception()
            if err is None:
                listener.on_end(self)
            else:
                listener.on_error(self, cast(UpstreamError, err))


class _FutureListener:
    """Resolves an `Exchange`'s futures (one shared instance: no per-exchange object)."""

    def on_head(self, ex: BaseExchange) -> None:
        head = cast(Exchange, ex).head
        if not head.done():
            head.set_result(None)

    def on_data(self, ex: BaseExchange, data: bytes) -> None:
        fx = cast(Exchange, ex)
        if fx.sink is not None:
            fx.sink(data)
        else:
            fx._pending.append(data)

    def on_end(self, ex: BaseExchange) -> None:
        fx = cast(Exchange, ex)
        if not fx.head.done():
            fx.head.set_result(None)
        if not fx.done.done():
            fx.done.set_result(None)

    def on_error(self, ex: BaseExchange, err: UpstreamError) -> None:
        fx = cast(Exchange, ex)
        if not fx.head.done():
            fx.head.set_exception(err)
            fx.head.exception()  # mark retrieved: a caller that was cancelled no longer awaits it
        if not fx.done.done():
            fx.done.set_exception(err)
            fx.done.exception()  # mark retrieved: the relay may not be awaiting it


_FUTURES = _FutureListener()


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a worker, carrying one exchange at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        # One parser per connection (a connection with a failed exchange is closed, never reused), whose
        # callbacks are C callables recording into `_events`: Python runs once per read, not per parser event.
        self._events = ParserEvents()
        self.parser = self._events.response_parser()
        self.exchange: BaseExchange | None = None
        self.idle_since = 0.0
        self.reusable = True

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.pool.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        self.pool.open_connections -= 1
        ex = self.exchange
        if ex is None:
            return
        self.exchange = None
        if ex.reused and not ex.got_bytes and ex.listener is not None:
            # A pooled connection the worker had closed (idle timeout) before it saw the request: send it once
            # more on a fresh connection. Only a reused one may be stale; a fresh one failing is a real failure.
            ex.reused = False
            self.pool._connect_and_start(ex)
            return
        ex.fail(UpstreamError("worker closed the connection" + (f": {exc}" if exc else ""),
                              before_response=not ex.got_bytes))

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            # Bytes with no request outstanding: the connection is out of sync; drop it.
            self.close()
            return
        ex.got_bytes = True
        events = self._events
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.exchange = None
            self.close()
            events.clear()
            ex.fail(UpstreamError(f"malformed response from worker: {exc}", before_response=not ex.head_done))
            return
        # What the parser saw in this read, in order: the head completed, body parts, the message completed.
        head_pending = not ex.head_done
        if head_pending:
            bufs = ex._head_bufs
            if not events.headers_done:
                if bufs is None:
                    ex._head_bufs = [data]
                else:
                    bufs.append(data)
                return  # the head continues in the next read
            events.headers_done.clear()
            self._head_complete(ex, data if bufs is None else b"".join(bufs) + data)
        bodies = events.bodies
        chunk = b""
        if bodies:
            chunk = bodies[0] if len(bodies) == 1 else b"".join(bodies)
            bodies.clear()
        complete = bool(events.completed)
        if complete:
            events.completed.clear()
            ex.complete = True
            self.exchange = None
            if self.reusable:
                self.pool._release(self)
            else:
                self.close()
        listener = ex.listener
        if listener is None:
            return
        if head_pending:
            listener.on_head(ex)
            if ex.listener is None:
                return  # the listener gave up on this exchange (a retry)
        if chunk:
            if ex.streaming:
                listener.on_data(ex, chunk)
                if ex.listener is None:
                    return
            else:
                ex.body_parts.append(chunk)
        if complete:
            ex.listener = None
            listener.on_end(ex)

    def _head_complete(self, ex: BaseExchange, joined: bytes) -> None:
        """The response head arrived (`joined`: the reads that carried it): status, raw head, framing,
        keep-alive."""
        ex._head_bufs = None
        end = joined.find(b"\r\n\r\n")
        raw = ex.raw_head = joined[:end] if end >= 0 else joined
        lower = ex._lower = raw.lower()
        parser = self.parser
        ex.status = parser.get_status_code()
        # HTTP/1.1 without a Connection header stays open (no version string built for the usual head).
        if (lower.find(b"\r\nconnection:") >= 0 or not raw.startswith(b"HTTP/1.1 ")) and not keep_alive(
                parser.get_http_version(), lower):
            self.reusable = False
        # Anything without a Content-Length (chunked, or close-delimited) is relayed as a stream.
        ex.streaming = lower.find(b"\r\ncontent-length:") < 0
        ex.head_done = True

    # -- helpers ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def start(self, ex: BaseExchange) -> None:
        self.exchange = ex
        ex.conn = self
        self.transport.write(ex.data)  # type: ignore[union-attr]


class UpstreamPool:
    """Idle keep-alive connections to one `host:port`, reused LIFO (the warmest socket first)."""

    def __init__(self, host: str, port: int, *, idle_timeout: float = 3.0, max_idle: int = 256,
                 connect_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.idle: deque[UpstreamConnection] = deque()
        self.open_connections = 0
        self.closed = False

    def send(self, ex: BaseExchange) -> None:
        """Start `ex` on an idle connection now, or on a new one once it is connected (within
        `connect_timeout`); its events go to `ex.listener`. Deadlines are the caller's (`ex.abort()`)."""
        conn = self._take_idle()
        if conn is not None:
            ex.reused = True
            conn.start(ex)
        else:
            self._connect_and_start(ex)

    def _connect_and_start(self, ex: BaseExchange) -> None:
        ex._connecting = asyncio.get_running_loop().create_task(self._connect_then_start(ex))

    async def _connect_then_start(self, ex: BaseExchange) -> None:
        try:
            conn = await self._connect()
        except UpstreamError as err:
            ex._connecting = None
            ex.fail(err)
            return
        except asyncio.CancelledError:
            ex._connecting = None
            ex.fail(UpstreamError("request abandoned while connecting", before_response=True))
            return
        ex._connecting = None
        if ex.listener is None:
            self._release(conn)  # abandoned meanwhile: the fresh connection is still good
            return
        conn.start(ex)

    async def _connect(self) -> UpstreamConnection:
        """Open a connection within `connect_timeout`."""
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port),
                self.connect_timeout)
        except TimeoutError as exc:
            raise UpstreamError(f"connect to {self.host}:{self.port} timed out", before_response=True,
                                timeout=True) from exc
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}",
                                before_response=True) from exc
        return proto

    def _take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.transport is not None and conn.reusable and now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    def _release(self, conn: UpstreamConnection) -> None:
        if self.closed or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    async def request(self, data: bytes, timeout: float | None = None,
                      sweeper: DeadlineSweeper | None = None,
                      started: list[Exchange] | None = None) -> Exchange:
        """Send one serialized request; returns its exchange once the response head arrived.

        `timeout` bounds connect + time to the response head (UpstreamError with timeout=True; the connection
        is closed so the worker sees the request go away); with a `sweeper` the deadline is checked by its sweep,
        else by a timer. A reused connection that turns out to be closed by the worker before any response byte
        is retried once on a fresh one (the worker never saw the request). Cancelled while waiting for the head,
        the exchange's connection is closed, so the worker sees the request go away too. The exchange is appended
        to `started` as soon as it exists (a caller running several legs can abort them).
        """
        loop = asyncio.get_running_loop()
        ex = Exchange(loop, data)
        if started is not None:
            started.append(ex)
        timer = None
        if timeout:
            ex.deadline = monotonic() + timeout
            if sweeper is not None:
                sweeper.add(ex)
            else:
                timer = loop.call_later(timeout, _head_timeout, ex)
        self.send(ex)
        try:
            await ex.head
        except asyncio.CancelledError:
            ex.abort()  # the caller gave up: do not leave the connection busy with an answer nobody reads
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if sweeper is not None and timeout:
                sweeper.discard(ex)
        return ex

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()


def _head_timeout(ex: Exchange) -> None:
    if not ex.head.done():
        ex.fail(UpstreamError("worker did not answer in time", before_response=True, timeout=True))
        ex.abort()


def build_request(method: bytes, path: bytes, host_header: bytes, body: bytes = b"",
                  headers: Headers | None = None, content_type: bytes = b"application/json") -> bytes:
    """Serialize one HTTP/1.1 request."""
    parts = [method, b" ", path, b" HTTP/1.1\r\nhost: ", host_header, b"\r\n"]
    if body or method == b"POST":
        parts.append(b"content-type: " + content_type + b"\r\ncontent-length: %d\r\n" % len(body))
    if headers:
        for name, value in headers:
            parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


async def fetch(pool: UpstreamPool, method: bytes, path: str, host_header: bytes, body: bytes = b"",
                headers: Headers | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """A whole request/response (admin calls and probes, not the hot path)."""
    data = build_request(method, path.encode(), host_header, body, headers)
    ex = await pool.request(data, timeout)
    loop = asyncio.get_running_loop()
    timer = loop.call_later(timeout, ex.abort)
    try:
        if ex.streaming:
            parts: list[bytes] = []
            ex.set_sink(parts.append)
            await ex.done
            return ex.status, b"".join(parts)
        await ex.done
        return ex.status, ex.body()
    except UpstreamError:
        raise
    finally:
        timer.cancel()
