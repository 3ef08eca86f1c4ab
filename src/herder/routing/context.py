"""RequestContext: everything routing needs from one request, extracted from the body parsed once."""

from __future__ import annotations

import os
import random
import re
import time
from typing import Any, Protocol

from herder.workers.worker import Worker

Headers = list[tuple[bytes, bytes]]

# Request headers never forwarded to workers (hop-by-hop, framing, and the gateway's own routing headers).
_NOT_FORWARDED = frozenset({
    b"host", b"content-length", b"content-type", b"transfer-encoding", b"connection", b"keep-alive",
    b"expect", b"te", b"upgrade", b"proxy-connection", b"x-smg-target-worker", b"accept-encoding",
})


# The header-name prefixes a RequestContext looks for (forwarded headers, the target worker): the gateway asks
# the server to flag requests that carry any (`Request.notable`), so the usual request needs no search here.
FORWARD_PREFIXES = (b"x-", b"authorization", b"trace")

# Forwarded request headers: authorization, trace context and every `x-` header (request ids,
# `x-smg-routing-key`, engine-specific controls), found in the lowercased raw header block in one regex pass.
_FORWARD = re.compile(rb"\r\n(authorization|traceparent|tracestate|x-[!#$%&'*+.^_`|~0-9a-z-]+)[ \t]*:[ \t]*([^\r]*)")


def forwardable_headers(raw: bytes, lower: bytes) -> Headers:
    """Headers relayed to workers (names lowercase, values as sent); hop-by-hop and framing headers are not."""
    out: Headers = []
    for m in _FORWARD.finditer(lower):
        name = m.group(1)
        if name in _NOT_FORWARDED:
            continue
        out.append((name, raw[m.start(2):m.end(2)].rstrip(b" \t")))
    return out


class HeaderSource(Protocol):
    """What a RequestContext reads headers from (herder.server.http.Request)."""

    raw_head: bytes
    notable: bool  # False: none of FORWARD_PREFIXES begins a header name (the server searched once)

    @property
    def lower_head(self) -> bytes: ...

    @property
    def headers(self) -> Headers: ...

    def header(self, name: bytes) -> bytes | None: ...


_rng = random.Random()  # seeded from urandom (ids, not secrets); reseeded in forked processes
os.register_at_fork(after_in_child=_rng.seed)
_getrandbits = _rng.getrandbits


_TRACEPARENT = b"00-%032x-%016x-00"  # W3C version 00, trace id, span id, not sampled: formatted from random bits
_USUAL_FORWARD = b"x-request-id: %b\r\ntraceparent: " + _TRACEPARENT + b"\r\n"  # the usual forwarded block


def new_traceparent() -> bytes:
    """A fresh W3C traceparent (version 00, random trace and span ids, not sampled)."""
    return _TRACEPARENT % (_getrandbits(128), _getrandbits(64))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(parts)
    return ""


def routing_text(endpoint: str, body: dict[str, Any]) -> str:
    """The text cache_aware routes on: every chat message (and reasoning) in order, the completion prompt, or
    the generate text."""
    if endpoint == "chat":
        pieces: list[str] = []
        for message in body.get("messages") or ():
            if isinstance(message, dict):
                text = _content_text(message.get("content"))
                if text:
                    pieces.append(text)
                reasoning = message.get("reasoning_content")
                if isinstance(reasoning, str) and reasoning:
                    pieces.append(reasoning)
        return " ".join(pieces)
    if endpoint == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            return " ".join(p for p in prompt if isinstance(p, str))
        return ""
    if endpoint == "generate":
        gen_text = body.get("text")
        if isinstance(gen_text, str):
            return gen_text
        if isinstance(gen_text, list) and gen_text and isinstance(gen_text[0], str):
            return str(gen_text[0])
        return ""
    if endpoint == "responses":
        value = body.get("input")
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return " ".join(_content_text(item.get("content")) for item in value if isinstance(item, dict))
    return ""


# A content-bearing event: chat delta content / reasoning, completion or generate text, non-empty.
_CONTENT = re.compile(rb'"(?:content|text|reasoning_content)"\s*:\s*"[^"]')


def _has_content(data: bytes) -> bool:
    """Whether a stream read carries a content-bearing event: a substring search for the compact JSON engines
    send (`"content":"x`), the regex only when that finds none (spaced JSON, completions' text, reasoning)."""
    at = data.find(b'"content":"')
    while at >= 0:
        if data[at + 11 : at + 12] != b'"':
            return True
        at = data.find(b'"content":"', at + 11)
    return _CONTENT.search(data) is not None


class StreamMeter:
    """TTFT bookkeeping for one stream: when the first content event passed, and how many events did.

    Counting events scans every byte (~0.7 ns each) and is needed only when the stream carries no usage block, so
    reads are kept (up to `KEEP_BYTES`) and counted after the stream, off the relay path (`total_events`)."""

    KEEP_BYTES = 64 * 1024
    __slots__ = ("_counted", "_kept", "_kept_bytes", "first_token_at")

    def __init__(self) -> None:
        self.first_token_at = 0.0
        self._counted = 0
        self._kept: list[bytes] = []
        self._kept_bytes = 0

    def add(self, data: bytes) -> None:
        self._kept.append(data)
        self._kept_bytes += len(data)
        if self._kept_bytes > self.KEEP_BYTES:
            self._counted = self.total_events()

    def total_events(self) -> int:
        """SSE events seen so far (`data:` lines)."""
        if self._kept:
            self._counted += sum(chunk.count(b"data:") for chunk in self._kept)
            self._kept = []
            self._kept_bytes = 0
        return self._counted


_REQUEST_LINES: dict[str, bytes] = {}  # upstream request line prefixes, per path (a handful of routes)


class RequestContext:
    """One inference request as routing sees it."""

    __slots__ = ("_forward_block", "_request_line", "_text", "body", "endpoint", "error_code", "meter_state", "model",
                 "parsed", "path", "request", "request_id", "started_at", "stream", "target_worker", "usage_tail")

    def __init__(self, path: str, endpoint: str, body: bytes, parsed: dict[str, Any], model: str | None,
                 stream: bool, request_id: bytes, request: HeaderSource, started_at: float,
                 traceparent: bytes | None = None) -> None:
        self.path = path
        self.endpoint = endpoint
        self.body = body
        self.parsed = parsed
        self.model = model
        self.stream = stream
        self.request_id = request_id
        self.request = request
        self.started_at = started_at
        self._text: str | None = None
        self.usage_tail = b""
        self.meter_state: StreamMeter | None = StreamMeter() if stream else None
        self.error_code: str | None = None
        lower = request.lower_head
        if traceparent is None and (not request.notable or (
                lower.find(b"\r\nx-") < 0 and lower.find(b"\r\nauthorization") < 0
                and lower.find(b"\r\ntrace") < 0)):
            # The common case: no header to forward and no target worker; the request id and a new trace the
            # engines can join go to workers (one format).
            self.target_worker: str | None = None
            self._forward_block = _USUAL_FORWARD % (request_id, _getrandbits(128), _getrandbits(64))
        else:
            self._forward_headers(request, lower, traceparent)
        line = _REQUEST_LINES.get(path)
        if line is None:
            line = _REQUEST_LINES[path] = b"POST " + path.encode() + b" HTTP/1.1\r\nhost: "
        self._request_line = line

    def _forward_headers(self, request: HeaderSource, lower: bytes, traceparent: bytes | None) -> None:
        """The forwarded header block and the target worker, from a head that may carry either."""
        target = request.header(b"x-smg-target-worker") if lower.find(b"\r\nx-smg-target-worker") >= 0 else None
        self.target_worker = target.decode("latin-1").strip() if target is not None else None
        fwd = forwardable_headers(request.raw_head, lower)
        names = {n for n, _ in fwd}
        if b"x-request-id" not in names:
            fwd.append((b"x-request-id", self.request_id))
        if traceparent is not None:
            # The gateway's own span becomes the engines' parent (--enable-trace).
            fwd = [(n, v) for n, v in fwd if n != b"traceparent"]
            fwd.append((b"traceparent", traceparent))
        elif b"traceparent" not in names:
            fwd.append((b"traceparent", new_traceparent()))  # start a trace the engines can join
        # The forwarded header lines, serialized once (workers without an API key get exactly these).
        self._forward_block = b"".join([name + b": " + value + b"\r\n" for name, value in fwd])

    @property
    def forward(self) -> Headers:
        """The headers forwarded to workers, (lowercase name, value), from the serialized block."""
        return [(name, value) for name, _, value in
                (line.partition(b": ") for line in self._forward_block.split(b"\r\n") if line)]

    @property
    def headers(self) -> Headers:
        """Every request header, (lowercase name, value) (parsed on first use)."""
        return self.request.headers

    def header(self, name: bytes) -> bytes | None:
        return self.request.header(name)

    # A RequestContext is the policies' RoutingSource on the HTTP path: the text (built on first use) and no
    # token ids.
    tokens = None

    @property
    def text(self) -> str:
        text = self._text
        if text is None:
            text = self._text = routing_text(self.endpoint, self.parsed)
        return text

    def upstream_request(self, worker: Worker, body: bytes | None = None) -> bytes:
        """The serialized upstream request: the client's original body bytes (or `body`, when a path rewrites
        it, e.g. PD's bootstrap fields), forwarded headers, and the worker's API key (which replaces the
        caller's Authorization) when it has one."""
        if body is None:
            body = self.body
        api_key = worker.api_key
        if api_key is None:
            block = self._forward_block
        else:
            block = b"".join([name + b": " + value + b"\r\n" for name, value in self.forward
                              if name != b"authorization"]) + b"authorization: Bearer " + api_key.encode() + b"\r\n"
        return b"%b%b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b\r\n%b" % (
            self._request_line, worker.host_header, len(body), block, body)

    def meter(self, data: bytes) -> None:
        """Per relayed stream read: note the first content event (TTFT), count events, and keep the read that
        carries usage (parsed once after the stream ends, never per event)."""
        st = self.meter_state
        if st is not None:
            if not st.first_token_at and _has_content(data):
                st.first_token_at = time.monotonic()
            st.add(data)
        # The usage block ends its event (OpenAI puts it last), which ends the read or precedes [DONE]: search
        # the read's tail, not all of it.
        if data.find(b'"usage"', len(data) - 1024) >= 0:
            self.usage_tail = data
