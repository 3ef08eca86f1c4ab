"""Keep-alive HTTP/1.1 connection pool to one worker, on `asyncio.Protocol` + the httptools response parser.

State is explicit: a connection is `idle` (in the pool's deque), `busy` (carrying one `Exchange`), or closed.
An `Exchange` is one request/response; the response head resolves `head`, body bytes go to `sink` as they arrive
(one call per socket read, so events that arrive together leave together), and `done` resolves at the end of the
message. Backpressure: the relay calls `pause_reading()` / `resume_reading()` on the exchange.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from time import monotonic

import httptools

from herder.workers.deadlines import DeadlineSweeper

Headers = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """Transport failure talking to a worker. `before_response` means no response byte arrived."""

    def __init__(self, message: str, *, before_response: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response
        self.timeout = timeout


class Exchange:
    """One upstream request and its response, fed by `UpstreamConnection` callbacks."""

    __slots__ = ("_batch", "_pending", "body_parts", "conn", "deadline", "done", "got_bytes", "head", "headers",
                 "sink", "status", "streaming")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: Headers = []
        self.got_bytes = False
        self.streaming = False
        self.body_parts: list[bytes] = []
        self.sink: Callable[[bytes], None] | None = None
        self._pending: list[bytes] = []
        self._batch: list[bytes] | None = None
        self.conn: UpstreamConnection | None = None
        self.deadline = 0.0  # for the response head; see DeadlineSweeper

    def expire(self) -> None:
        """The head did not arrive in time: fail it and close the connection (the worker sees the abort)."""
        _head_timeout(self)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        """Deliver body bytes to `sink` from now on (bytes that arrived earlier are delivered first)."""
        self.sink = sink
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            sink(data)

    def body(self) -> bytes:
        parts = self.body_parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pause_reading(self) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_reading(self) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    def abort(self) -> None:
        """Close the upstream connection now (client gone, timeout); the worker sees the disconnect."""
        conn = self.conn
        if conn is not None:
            conn.close()


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a worker, carrying one exchange at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.idle_since = 0.0
        self.reusable = True
        self.used = False

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
        if ex is not None:
            self.exchange = None
            before = not ex.got_bytes
            err = UpstreamError("worker closed the connection" + (f": {exc}" if exc else ""),
                                before_response=before)
            if not ex.head.done():
                ex.head.set_exception(err)
            if not ex.done.done():
                ex.done.set_exception(err)
                ex.done.exception()  # mark retrieved: the relay may not be awaiting it

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            # Bytes with no request outstanding: the connection is out of sync; drop it.
            self.close()
            return
        ex.got_bytes = True
        ex._batch = []
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            err = UpstreamError(f"malformed response from worker: {exc}", before_response=not ex.head.done())
            if not ex.head.done():
                ex.head.set_exception(err)
            elif not ex.done.done():
                ex.done.set_exception(err)
                ex.done.exception()
            self.close()
            return
        batch = ex._batch
        ex._batch = None
        if batch:
            chunk = batch[0] if len(batch) == 1 else b"".join(batch)
            if ex.sink is not None:
                ex.sink(chunk)
            elif ex.streaming:
                ex._pending.append(chunk)
            else:
                ex.body_parts.append(chunk)
        if self.exchange is None and not ex.done.done():
            ex.done.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            return
        parser = self.parser
        ex.status = parser.get_status_code()
        if not parser.should_keep_alive():
            self.reusable = False
        # Anything without a Content-Length (chunked, or close-delimited) is relayed as a stream.
        ex.streaming = ex.header(b"content-length") is None
        if not ex.head.done():
            ex.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None and ex._batch is not None:
            ex._batch.append(body)

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            return
        # `done` is resolved by data_received after the batch is delivered, so bytes always precede the end.
        self.exchange = None
        if self.reusable:
            self.pool._release(self)
        else:
            self.close()

    # -- helpers ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def start(self, ex: Exchange, data: bytes) -> None:
        self.exchange = ex
        ex.conn = self
        self.used = True
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(data)  # type: ignore[union-attr]


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
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self, deadline: float = 0.0) -> UpstreamConnection:
        """Open a connection, within `connect_timeout` and what is left before `deadline` (0 = none)."""
        loop = asyncio.get_running_loop()
        timeout = self.connect_timeout
        if deadline:
            timeout = min(timeout, max(0.0, deadline - monotonic()))
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port), timeout)
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
        the exchange's connection is closed, so the worker sees the request go away too. Each exchange started
        is appended to `started` as soon as it exists (a caller running several legs can abort them).
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = monotonic() + timeout if timeout else 0.0
        conn = self._take_idle()
        reused = conn is not None
        if conn is None:
            conn = await self._connect(deadline)
        # Only a reused connection may be stale; a fresh one that fails is a real failure (retryable upstream).
        ex = await self._exchange(loop, conn, data, deadline, sweeper, started, final=not reused)
        if ex is None:
            conn = await self._connect(deadline)
            ex = await self._exchange(loop, conn, data, deadline, sweeper, started, final=True)
        assert ex is not None
        return ex

    async def _exchange(self, loop: asyncio.AbstractEventLoop, conn: UpstreamConnection, data: bytes,
                        deadline: float, sweeper: DeadlineSweeper | None, started: list[Exchange] | None,
                        final: bool = False) -> Exchange | None:
        """Start one exchange and wait for its head; None = the reused connection was stale (retry it)."""
        ex = Exchange(loop)
        ex.deadline = deadline
        if started is not None:
            started.append(ex)
        conn.start(ex, data)
        timer = None
        if deadline:
            if sweeper is not None:
                sweeper.add(ex)
            else:
                timer = loop.call_at(loop.time() + max(0.0, deadline - monotonic()), _head_timeout, ex)
        try:
            await ex.head
        except UpstreamError as exc:
            if final or not exc.before_response or exc.timeout:
                raise
            return None
        except asyncio.CancelledError:
            ex.abort()  # the caller gave up: do not leave the connection busy with an answer nobody reads
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if sweeper is not None:
                sweeper.discard(ex)
        return ex

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()


def _head_timeout(ex: Exchange) -> None:
    if not ex.head.done():
        ex.head.set_exception(UpstreamError("worker did not answer in time", before_response=True, timeout=True))
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
