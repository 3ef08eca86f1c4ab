"""Stalled streams, first-byte and connect timeouts: the client gets a 504 / SSE error, the upstream is closed."""

from __future__ import annotations

import asyncio
import socket

import httpx
import orjson

from tests.conftest import GatewayFactory
from tests.integration.reliability_support import CHAT, assert_envelope, chat, start_workers, stop_workers
from tests.waiting import wait_for


async def test_stalled_stream_gets_sse_error_and_upstream_is_closed(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(worker_urls=[worker.url], stream_body_stall_timeout_secs=0.3)
        st = worker.engine.stats
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            body = chat("stall", stream=True, max_tokens=20)
            async with client.stream("POST", CHAT, json=body, headers={"x-sim-stall-after": "3"}) as r:
                assert r.status_code == 200
                events: list[str] = []
                during = -1
                async for line in r.aiter_lines():
                    if not line:
                        continue
                    if during < 0 and st.stalled == 1:
                        during = st.open_connections  # the worker holds the stalled connection open
                    events.append(line)
        assert during >= 1
        data = [e.removeprefix("data: ") for e in events]
        assert "[DONE]" not in data  # the stream did not complete: no fake success
        tokens = [d for d in data if '"choices"' in d]
        assert len(tokens) >= 3
        err = orjson.loads(data[-1])["error"]
        print(f"{len(tokens)} token events, then: {err}")
        assert err["code"] == "call_upstream_timeout" and err["message"]
        # the gateway closed the upstream connection: the worker counts the request aborted, the socket is gone
        await wait_for(lambda: st.aborted == 1 and st.open_connections < during)
        assert st.stalled == 1 and st.running == 0
        gw.telemetry.flush()  # request ends are recorded off the hot path (within 50 ms, or at a scrape)
        tel = gw.metrics.router_request_errors.series()
        assert any(labels[-1] == "call_upstream_timeout" for labels in tel), tel
        w = gw.registry.find_by_url(worker.url)
        assert w is not None and w.load == 0
    finally:
        await stop_workers([worker])


async def test_first_byte_timeout_gives_504_and_cancels_upstream(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(worker_urls=[worker.url], request_timeout_secs=0.3, disable_retries=True)
        st = worker.engine.stats
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            r = await client.post(CHAT, json=chat(), headers={"x-sim-ttft-ms": "20000"})
            assert_envelope(r, 504, "call_upstream_timeout")
            # the worker sees the disconnect at once and stops generating (no 20 s of wasted work)
            await wait_for(lambda: st.aborted == 1 and st.running == 0)
            assert st.completed == 0
            r = await client.post(CHAT, json=chat())  # the gateway and worker keep serving
            assert r.status_code == 200
        w = gw.registry.find_by_url(worker.url)
        assert w is not None and w.load == 0
    finally:
        await stop_workers([worker])


def _blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: further connects hang in SYN-SENT (never refused)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(2):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(srv.getsockname())
        except BlockingIOError:
            pass
        fillers.append(c)
    return srv, fillers


async def test_connect_timeout_gives_504(make_gateway: GatewayFactory) -> None:
    """A worker whose host stops accepting connections: the request fails with 504 within the request timeout
    (not the pool's fixed 10 s connect timeout)."""
    (worker,) = await start_workers(1)
    srv, fillers = _blackhole()
    try:
        gw = await make_gateway(worker_urls=[worker.url], request_timeout_secs=0.5, disable_retries=True)
        w = gw.registry.find_by_url(worker.url)
        assert w is not None
        # the worker "moves" behind the black hole: idle connections are gone, new ones never complete
        w.pool.close()
        w.pool.closed = False
        w.pool.port = srv.getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=5) as client:
            r = await client.post(CHAT, json=chat())
        assert_envelope(r, 504, "call_upstream_timeout")
        assert w.load == 0
    finally:
        for c in fillers:
            c.close()
        srv.close()
        await stop_workers([worker])


async def _hangup_worker() -> tuple[asyncio.Server, list[int]]:
    """A worker that answers probes (Connection: close) but hangs up on every inference request unanswered."""
    hangups = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /health"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        elif head.startswith(b"GET /v1/models"):
            body = b'{"object":"list","data":[{"id":"sim-model","object":"model"}]}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%b" % (len(body), body)
            )
        else:
            hangups[0] += 1
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, hangups


async def test_worker_hanging_up_on_a_fresh_connection_gives_502(make_gateway: GatewayFactory) -> None:
    """A fresh upstream connection closed before any response byte is a 502 connection failure (retryable),
    never an internal error."""
    server, hangups = await _hangup_worker()
    try:
        port = server.sockets[0].getsockname()[1]
        gw = await make_gateway(worker_urls=[f"http://127.0.0.1:{port}"], disable_retries=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as client:
            r = await client.post(CHAT, json=chat())
        assert hangups[0] == 1
        assert_envelope(r, 502, "call_upstream_connection_failed")
    finally:
        server.close()


async def test_client_leaving_before_the_first_byte_cancels_upstream(make_gateway: GatewayFactory) -> None:
    """A client that gives up while the worker is still thinking: the gateway closes the upstream request at
    once (the worker stops generating), releases the worker's load, and does not count a worker failure."""
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(worker_urls=[worker.url])
        st = worker.engine.stats
        body = orjson.dumps(chat())
        _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST %b HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-sim-ttft-ms: 20000\r\n"
                     b"content-length: %d\r\n\r\n%b" % (CHAT.encode(), len(body), body))
        await writer.drain()
        await wait_for(lambda: st.running == 1)
        w = gw.registry.find_by_url(worker.url)
        assert w is not None and w.load == 1
        writer.close()
        await wait_for(lambda: st.aborted == 1 and st.running == 0)
        await wait_for(lambda: w.load == 0)
        assert st.completed == 0 and w.breaker.consecutive_failures == 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            r = await client.post(CHAT, json=chat())  # the gateway and worker keep serving
            assert r.status_code == 200
    finally:
        await stop_workers([worker])
