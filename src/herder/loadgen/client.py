"""A lean asyncio HTTP/1.1 keep-alive client for benchmarking OpenAI-compatible endpoints.

One `asyncio.Protocol` per connection with the httptools (llhttp) response parser; a small LIFO pool of
keep-alive connections per client. `HttpClient.post` sends one JSON body and measures what a benchmark needs:
status, time to the first content token (streams), the gaps between content events, end-to-end latency, token
usage (including `usage.prompt_tokens_details.cached_tokens`) and the worker that served the request when the
gateway says so in a response header.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import orjson

__all__ = [
    "WORKER_HEADERS",
    "HttpClient",
    "HttpError",
    "RequestResult",
    "SSEDecoder",
    "StreamAccumulator",
    "parse_base_url",
]

perf = time.perf_counter

#: Response headers a gateway may use to name the worker that served a request (lower-case).
WORKER_HEADERS: tuple[bytes, ...] = (b"x-smg-worker", b"x-herder-worker")

# Keep at most this much of a non-streamed or error body (error messages, JSON answers).
_MAX_BODY = 64 * 1024 * 1024
_MAX_ERROR_TEXT = 300


class HttpError(Exception):
    """A request that did not produce a usable response (connection, protocol or status error)."""


@dataclass(slots=True)
class RequestResult:
    """What one request measured. Times are seconds; `start` is a `time.perf_counter()` stamp."""

    status: int = 0
    ok: bool = False
    error: str | None = None
    start: float = 0.0
    e2e: float = 0.0
    ttft: float | None = None
    itls: list[float] = field(default_factory=list)
    content_events: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    worker: str | None = None
    text: str = ""
    saw_done: bool = False


@dataclass(slots=True)
class BaseUrl:
    """A parsed `http(s)://host[:port][/prefix]` target."""

    scheme: str
    host: str
    port: int
    prefix: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def parse_base_url(url: str) -> BaseUrl:
    """Parse a base URL; a trailing `/v1` is dropped because request paths already start with `/v1`."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (use http:// or https://)")
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        prefix = prefix[:-3]
    return BaseUrl(parts.scheme, parts.hostname, port, prefix)


class SSEDecoder:
    """Sans-I/O server-sent-events decoder: `feed(bytes)` returns the `data` payloads of completed events.

    Lines end with LF or CRLF (a lone CR is not treated as a line end); multi-line data is joined with LF;
    comments and fields other than `data` are ignored. Chunk boundaries do not change the output.
    """

    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._buf and not self._data and chunk.startswith(b"data:") and chunk.endswith(b"\n\n"):
            # Fast path: the usual chunk is exactly one single-line event.
            value = chunk[5:-2]
            if b"\n" not in value and not value.endswith(b"\r"):
                return [value[1:] if value.startswith(b" ") else value]
        buf = self._buf + chunk if self._buf else chunk
        out: list[bytes] = []
        pos = 0
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                break
            line = buf[pos:end]
            pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            # Other fields (event:, id:, retry:) and comments (":...") carry nothing we measure.
        self._buf = buf[pos:]
        return out

    def finish(self) -> list[bytes]:
        """Flush an event left without its closing blank line (lenient: some servers omit it)."""
        out = self.feed(b"\n\n") if self._buf else []
        if self._data:
            out.append(b"\n".join(self._data))
            self._data = []
        return out


def _usage_into(result: RequestResult, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(pt, int):
        result.prompt_tokens = pt
    if isinstance(ct, int):
        result.completion_tokens = ct
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        result.cached_tokens = details["cached_tokens"]


def _error_text(obj: Any, raw: bytes) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        msg = obj["error"].get("message")
        if isinstance(msg, str):
            return msg[:_MAX_ERROR_TEXT]
    return raw[:_MAX_ERROR_TEXT].decode("utf-8", "replace")


class StreamAccumulator:
    """Sans-I/O: turns SSE `data` payloads of an OpenAI chat/completions stream into a `RequestResult`.

    A content event is a chunk whose first choice carries text (`delta.content`, `delta.reasoning_content`,
    `delta.tool_calls` or completions `text`); its arrival time sets TTFT (first) and the inter-token gaps.
    """

    __slots__ = ("_last", "_pieces", "result")

    def __init__(self, result: RequestResult) -> None:
        self.result = result
        self._last = 0.0
        self._pieces: list[str] = []

    def event(self, payload: bytes, now: float) -> None:
        result = self.result
        if payload == b"[DONE]":
            result.saw_done = True
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if type(obj) is not dict:
            return
        if "error" in obj and result.error is None:
            result.error = _error_text(obj, payload)
        choices = obj.get("choices")
        if choices and type(choices) is list and type(choices[0]) is dict:
            choice = choices[0]
            delta = choice.get("delta")
            if type(delta) is dict:
                text = delta.get("content")
                content = bool(text) or bool(delta.get("reasoning_content") or delta.get("tool_calls"))
            else:
                text = choice.get("text")
                content = bool(text)
            if content:
                if result.content_events == 0:
                    result.ttft = now - result.start
                else:
                    result.itls.append(now - self._last)
                self._last = now
                result.content_events += 1
                if type(text) is str:
                    self._pieces.append(text)
        if obj.get("usage"):
            _usage_into(result, obj["usage"])

    def finish(self) -> None:
        self.result.text = "".join(self._pieces)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; carries at most one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.parser = httptools.HttpResponseParser(self)
        self.fut: asyncio.Future[None] | None = None
        self.result = RequestResult()
        self.stream = False
        self.sse = SSEDecoder()
        self.acc = StreamAccumulator(self.result)
        self.body: list[bytes] = []
        self.body_len = 0
        self.now = 0.0
        self.got_bytes = False
        self.headers_done = False
        self.framed = False  # Content-Length or chunked: the parser will see the end of the body
        self.keep_alive = True
        self.close_after = False

    # -- exchange lifecycle --------------------------------------------------------------------------------
    def begin(self, fut: asyncio.Future[None], result: RequestResult, stream: bool) -> None:
        self.fut = fut
        self.result = result
        self.stream = stream
        self.sse = SSEDecoder()
        self.acc = StreamAccumulator(result)
        self.body = []
        self.body_len = 0
        self.got_bytes = False
        self.headers_done = False
        self.framed = False

    def _complete(self, exc: BaseException | None = None) -> None:
        fut, self.fut = self.fut, None
        if fut is None or fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(None)

    # -- asyncio.Protocol ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the Transport interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.now = perf()
        self.got_bytes = True
        if self.fut is None:
            # Bytes with no request outstanding: the connection is unusable for the next request.
            self.close_after = True
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.close_after = True
            self._complete(HttpError(f"bad HTTP response: {e}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.fut is None:
            return
        if self.headers_done and not self.framed:
            # Body delimited by connection close: this is its end.
            self.now = perf()
            self.on_message_complete()
            return
        self._complete(ConnectionError(f"connection lost ({exc or 'closed by peer'})"))

    # -- httptools callbacks ----------------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname in WORKER_HEADERS:
            self.result.worker = value.decode("latin-1").strip()
        elif lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True
        elif lname == b"content-type" and self.stream and b"event-stream" not in value.lower():
            # A server that ignored `stream: true` and answered with one JSON body.
            self.stream = False

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.result.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        if self.stream and 200 <= self.result.status < 300:
            now = self.now
            for payload in self.sse.feed(data):
                self.acc.event(payload, now)
        elif self.body_len < _MAX_BODY:
            self.body.append(data)
            self.body_len += len(data)

    def on_message_complete(self) -> None:
        result = self.result
        result.e2e = self.now - result.start
        self.keep_alive = self.parser.should_keep_alive() and not self.lost
        status = result.status
        ok_status = 200 <= status < 300
        if self.stream and ok_status:
            for payload in self.sse.finish():
                self.acc.event(payload, self.now)
            self.acc.finish()
        else:
            raw = b"".join(self.body)
            obj: Any = None
            with contextlib.suppress(orjson.JSONDecodeError):
                obj = orjson.loads(raw) if raw else None
            if ok_status and isinstance(obj, dict):
                _usage_into(result, obj.get("usage"))
                choices = obj.get("choices")
                if choices and isinstance(choices, list) and isinstance(choices[0], dict):
                    msg = choices[0].get("message")
                    text = msg.get("content") if isinstance(msg, dict) else choices[0].get("text")
                    if isinstance(text, str):
                        result.text = text
                if "error" in obj:
                    result.error = _error_text(obj, raw)
            elif not ok_status:
                result.error = _error_text(obj, raw)
            self.body = [raw] if raw else []
        result.ok = ok_status and result.error is None
        self._complete()


class HttpClient:
    """Keep-alive HTTP/1.1 client for one base URL with a pool of at most `pool_size` connections."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        pool_size: int = 64,
        timeout: float = 600.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.base = parse_base_url(base_url)
        self.timeout = timeout
        self._sem = asyncio.Semaphore(max(1, pool_size))
        self._idle: list[_Conn] = []
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if self.base.scheme == "https" else None
        )
        headers = [f"Host: {self.base.host_header}", "User-Agent: herder-bench", "Accept-Encoding: identity"]
        if api_key:
            headers.append(f"Authorization: Bearer {api_key}")
        for k, v in (extra_headers or {}).items():
            headers.append(f"{k}: {v}")
        self._common = ("\r\n".join(headers) + "\r\n").encode("latin-1")
        self.connections_opened = 0

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            _Conn,
            self.base.host,
            self.base.port,
            ssl=self._ssl,
            server_hostname=self.base.host if self._ssl else None,
        )
        self.connections_opened += 1
        return proto

    def _head(self, method: str, path: str, body_len: int, stream: bool) -> bytes:
        accept = b"text/event-stream" if stream else b"application/json"
        first = f"{method} {self.base.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
        parts = [first, self._common, b"Accept: ", accept, b"\r\n"]
        if method != "GET" or body_len:
            parts.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % body_len)
        parts.append(b"\r\n")
        return b"".join(parts)

    async def request(
        self, method: str, path: str, body: bytes = b"", *, stream: bool = False, timeout: float | None = None
    ) -> RequestResult:
        """Send one request; never raises for network or HTTP errors (they land in `result.error`)."""
        payload = self._head(method, path, len(body), stream) + body
        result = RequestResult()
        async with self._sem:
            result.start = perf()
            try:
                async with asyncio.timeout(timeout if timeout is not None else self.timeout):
                    await self._exchange(payload, result, stream)
            except TimeoutError:
                result.error = "timeout"
                result.e2e = perf() - result.start
            except (OSError, HttpError) as e:
                result.error = str(e) or type(e).__name__
                result.e2e = perf() - result.start
        return result

    async def post(
        self, path: str, body: bytes, *, stream: bool, timeout: float | None = None
    ) -> RequestResult:
        """POST a JSON body (already serialized) and measure it."""
        return await self.request("POST", path, body, stream=stream, timeout=timeout)

    async def get_json(self, path: str, *, timeout: float = 10.0) -> Any:
        """GET a JSON document; raises `HttpError` on any failure."""
        res = RequestResult()
        async with self._sem:
            res.start = perf()
            try:
                async with asyncio.timeout(timeout):
                    conn = await self._exchange(self._head("GET", path, 0, False), res, False)
            except (TimeoutError, OSError) as e:
                raise HttpError(f"GET {path}: {e or type(e).__name__}") from e
        if not res.ok:
            raise HttpError(f"GET {path}: status {res.status}: {res.error}")
        raw = b"".join(conn.body)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise HttpError(f"GET {path}: not JSON") from e

    async def _exchange(self, payload: bytes, result: RequestResult, stream: bool) -> _Conn:
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            if conn.lost:
                if attempt == 0:
                    continue
                conn = await self._connect()
                reused = False
            fut: asyncio.Future[None] = loop.create_future()
            conn.begin(fut, result, stream)
            assert conn.transport is not None
            conn.transport.write(payload)
            try:
                await fut
            except ConnectionError:
                # A reused keep-alive connection the server closed while idle: safe to resend once,
                # because not a byte of a response arrived.
                if reused and not conn.got_bytes and attempt == 0:
                    result.start = perf()
                    continue
                raise
            except BaseException:
                conn.fut = None
                if conn.transport is not None:
                    conn.transport.close()
                raise
            if conn.keep_alive and not conn.close_after and not conn.lost:
                self._idle.append(conn)
            elif conn.transport is not None:
                conn.transport.close()
            return conn
        raise HttpError("could not send request")  # unreachable: the loop returns or raises

    async def close(self) -> None:
        """Close idle connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)
