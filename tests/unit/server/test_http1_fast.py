"""OneMessage (herder.http1): a read that is exactly one message parses like the full parser; anything else
declines and leaves the parser usable."""

from __future__ import annotations

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from herder.http1 import OneMessage, ParserEvents, keep_alive

_NAMES = st.sampled_from([b"host", b"x-request-id", b"accept", b"user-agent", b"x-custom", b"authorization"])
_VALUES = st.binary(min_size=0, max_size=40).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E))
_BODIES = st.binary(min_size=0, max_size=300)


def _request(method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = b"%b %b HTTP/1.1\r\n" % (method, path)
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    if body or method == b"POST":
        head += b"content-length: %d\r\n" % len(body)
    return head + b"\r\n" + body


class _Full:
    """The reference: httptools with Python callbacks, as the connection protocol uses it."""

    def __init__(self) -> None:
        self.url = b""
        self.body = b""
        self.done = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done += 1


_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"])
_PATHS = st.sampled_from([b"/", b"/v1/chat/completions", b"/health?x=1", b"/workers/abc"])


@settings(max_examples=300, deadline=None)
@given(_METHODS, _PATHS, st.lists(st.tuples(_NAMES, _VALUES), max_size=6), _BODIES)
def test_one_whole_request_parses_like_the_full_parser(method: bytes, path: bytes,
                                                       headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    data = _request(method, path, headers, body)
    full = _Full()
    parser = httptools.HttpRequestParser(full)
    parser.feed_data(data)
    fast = OneMessage()
    assert fast.feed(data)
    assert full.done == 1
    assert fast.parser.get_method() == parser.get_method() == method
    assert b"".join(fast.url) == full.url == path
    assert b"".join(fast.body) == full.body == body
    assert fast.parser.get_http_version() == "1.1"


@settings(max_examples=200, deadline=None)
@given(_METHODS, _PATHS, _BODIES, st.data())
def test_partial_or_pipelined_reads_decline_and_the_parser_recovers(method: bytes, path: bytes, body: bytes,
                                                                   data: st.DataObject) -> None:
    whole = _request(method, path, [(b"host", b"x")], body)
    fast = OneMessage()
    cut = data.draw(st.integers(1, len(whole) - 1))
    assert not fast.feed(whole[:cut])  # the message continues in the next read
    assert not fast.feed(whole + whole[:cut])  # a second (pipelined) request began
    assert not fast.feed(whole + whole)  # two whole requests: the caller's full parser must see both
    assert fast.feed(whole)  # a fresh parser after each decline


def test_malformed_and_upgrade_requests_decline() -> None:
    fast = OneMessage()
    assert not fast.feed(b"GARBAGE\r\n\r\n")
    assert not fast.feed(b"POST / HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nab")
    assert not fast.feed(b"GET / HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
    assert fast.feed(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([200, 201, 400, 404, 429, 500, 503]), _BODIES, st.booleans(), st.data())
def test_response_events_whatever_the_reads(status: int, body: bytes, chunked: bool, data: st.DataObject) -> None:
    """ParserEvents (the upstream side): across any split of a response into reads, the head completes once,
    the body parts join to the body, and the message completes once, at the last read."""
    if chunked:
        framed = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        raw = b"HTTP/1.1 %d X\r\ntransfer-encoding: chunked\r\n\r\n%b" % (status, framed)
    else:
        raw = b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%b" % (status, len(body), body)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=4)))
    reads = [raw[i:j] for i, j in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    events = ParserEvents()
    parser = events.response_parser()
    heads = completes = 0
    got = b""
    for n, read in enumerate(reads):
        parser.feed_data(read)
        heads += len(events.headers_done)
        got += b"".join(events.bodies)
        completes += len(events.completed)
        assert completes == (1 if n == len(reads) - 1 else 0)
        events.clear()
    assert heads == 1 and got == body
    assert parser.get_status_code() == status


def test_keep_alive_rules() -> None:
    assert keep_alive("1.1", b"get / http/1.1\r\nhost: x")
    assert not keep_alive("1.1", b"get / http/1.1\r\nConnection: close".lower())
    assert not keep_alive("1.0", b"get / http/1.0\r\nhost: x")
    assert keep_alive("1.0", b"get / http/1.0\r\nconnection: keep-alive")
