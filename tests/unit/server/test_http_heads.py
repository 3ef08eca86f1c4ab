"""The server finds each request's own header block: pipelined, split across reads, byte by byte."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.server.http import HttpServer, Reply, Request


def _request(i: int, body: bytes = b"") -> bytes:
    return (b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: id-%d\r\nX-Extra: %d\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (i, i * 7, len(body), body))


async def _serve_and_send(chunks: list[bytes], expected: int) -> list[tuple[bytes | None, bytes | None, bytes]]:
    seen: list[tuple[bytes | None, bytes | None, bytes]] = []

    async def handler(req: Request, reply: Reply) -> None:
        seen.append((req.header(b"x-request-id"), req.header(b"x-extra"), req.body))
        reply.send(200, b"ok")

    server = HttpServer(handler)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)
        data = b""
        while data.count(b"HTTP/1.1 200") < expected:
            more = await asyncio.wait_for(reader.read(65536), 5)
            assert more, data
            data += more
        writer.close()
    finally:
        await server.stop()
    return seen


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 4), cuts=st.lists(st.integers(0, 10_000), max_size=8), bodies=st.booleans())
def test_each_pipelined_request_gets_its_own_headers(n: int, cuts: list[int], bodies: bool) -> None:
    # identical request lines and a body that itself looks like a request line: headers must not be confused
    reqs = [_request(i, b"POST /echo HTTP/1.1\r\nX-Request-Id: fake\r\n" if bodies else b"") for i in range(n)]
    data = b"".join(reqs)
    seen = asyncio.run(_serve_and_send(_split(data, cuts), n))
    assert [s[0] for s in seen] == [b"id-%d" % i for i in range(n)]
    assert [s[1] for s in seen] == [b"%d" % (i * 7) for i in range(n)]


def test_byte_by_byte() -> None:
    data = _request(1, b'{"a": 1}') + _request(2)
    seen = asyncio.run(_serve_and_send([data[i:i + 1] for i in range(len(data))], 2))
    assert seen == [(b"id-1", b"7", b'{"a": 1}'), (b"id-2", b"14", b"")]


def test_header_lookup_is_case_insensitive_and_lazy_list_parses() -> None:
    req = Request(b"GET", "/", b"", b"GET / HTTP/1.1\r\nX-Foo:  bar \r\nAUTHORIZATION: Bearer k\r\nx-multi: 1",
                  b"", "1.1", True, None)
    assert req.header(b"x-foo") == b"bar"
    assert req.header(b"authorization") == b"Bearer k"
    assert req.header(b"x-multi") == b"1"
    assert req.header(b"missing") is None
    assert req.headers == [(b"x-foo", b"bar"), (b"authorization", b"Bearer k"), (b"x-multi", b"1")]


def test_notable_flag_and_keep_alive_on_the_one_read_path() -> None:
    """A one-read request says whether its head has a notable header; when it says no, nothing notable is there,
    and Connection still decides keep-alive."""
    seen: list[tuple[bool, bool, bytes | None]] = []

    async def handler(req: Request, reply: Reply) -> None:
        seen.append((req.notable, req.keep_alive, req.header(b"x-trace-me")))
        reply.send(200, b"ok")

    async def run() -> None:
        server = HttpServer(handler, notable_headers=(b"x-", b"authorization"))
        await server.start("127.0.0.1", 0)
        try:
            for extra in (b"", b"X-Trace-Me: 1\r\n", b"authorization: Bearer k\r\n", b"Connection: close\r\n",
                          b"user-agent: x-client\r\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\n" + extra + b"\r\n")
                assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
                writer.close()
        finally:
            await server.stop()

    asyncio.run(run())
    assert seen == [(False, True, None), (True, True, b"1"), (True, True, None), (True, False, None),
                    (False, True, None)]
