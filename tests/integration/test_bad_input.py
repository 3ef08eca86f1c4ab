"""Bad input gets the right status and an OpenAI-shaped body; disconnects release load and close upstreams."""

from __future__ import annotations

import asyncio
import socket

import httpx
import orjson
import pytest

from herder.sim.fleet import SimFleet
from tests.conftest import GatewayFactory
from tests.waiting import wait_for


def _assert_envelope(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code", "param"} and err["message"]
    if code is not None:
        assert err["code"] == code
    assert r.headers["x-smg-error-code"] == err["code"]
    assert r.headers["x-request-id"]


CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    (CHAT, b"{not json", 400, "invalid_json"),
    (CHAT, b"", 400, "invalid_json"),
    (CHAT, b"[1, 2]", 400, "invalid_json"),
    (CHAT, b'{"model": "sim-model"}', 400, "missing_required_field"),
    (CHAT, b'{"model": "sim-model", "messages": []}', 400, "invalid_request"),
    (CHAT, b'{"model": "sim-model", "messages": "hi"}', 400, "invalid_request"),
    (CHAT, b'{"model": "sim-model", "messages": [{"content": "x"}]}', 400, "invalid_request"),
    (CHAT, b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_request"),
    (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "invalid_request"),
    (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400, "invalid_request"),
    (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "invalid_request"),
    (CHAT, b'{"model": "unknown", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
    ("/v1/completions", b'{"model": "sim-model"}', 400, "missing_required_field"),
    ("/v1/completions", b'{"prompt": {"a": 1}}', 400, "invalid_request"),
    ("/generate", b'{"sampling_params": {}}', 400, "missing_required_field"),
    ("/v1/embeddings", b'{"input": 5}', 400, "invalid_request"),
    ("/v1/rerank", b'{"query": "q", "documents": "d"}', 400, "invalid_request"),
    ("/nope", b"{}", 404, "not_found"),
])
async def test_bad_requests(make_gateway: GatewayFactory, path: str, body: bytes, status: int, code: str) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            r = await client.post(path, content=body, headers={"content-type": "application/json"})
            _assert_envelope(r, status, code)
            # nothing reached the worker, and the gateway still serves
            assert fleet.engines[0].stats.inference_requests == 0
            ok = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
            assert ok.status_code == 200


async def test_method_not_allowed_and_body_too_large(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, max_payload_size=1000)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            _assert_envelope(await client.get(CHAT), 405, "method_not_allowed")
            _assert_envelope(await client.delete("/v1/models"), 405, "method_not_allowed")
            big = orjson.dumps({"messages": [{"role": "user", "content": "x" * 5000}]})
            r = await client.post(CHAT, content=big)
            assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_no_available_workers_and_upstream_failure(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, retry_max_retries=2, retry_initial_backoff_ms=1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            await fleet.kill(0)
            r = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]})
            _assert_envelope(r, 502, "call_upstream_connection_failed")
            for w in gw.registry.workers.values():
                w.breaker.config.failure_threshold = 1
                w.breaker.record(False)
            r = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]})
            _assert_envelope(r, 503, "no_available_workers")


async def test_first_byte_timeout_is_504(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, request_timeout_secs=0.3, disable_retries=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            r = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]},
                                  headers={"x-sim-ttft-ms": "3000"})
            _assert_envelope(r, 504, "call_upstream_timeout")
            await wait_for(lambda: fleet.engines[0].stats.running == 0)
            assert next(iter(gw.registry.workers.values())).load == 0


async def test_client_disconnect_mid_stream_releases_load_and_closes_upstream(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1, itl_ms=20.0) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        worker = next(iter(gw.registry.workers.values()))
        engine = fleet.engines[0]
        body = orjson.dumps({"messages": [{"role": "user", "content": "long story"}], "max_tokens": 500,
                             "stream": True})
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%b" % (len(body), body))
        await writer.drain()
        got = b""
        while got.count(b"data:") < 3:
            got += await reader.read(4096)
        assert worker.load == 1 and engine.stats.running == 1
        conns_during = engine.stats.open_connections
        writer.transport.abort()  # the client vanishes
        await wait_for(lambda: worker.load == 0)
        await wait_for(lambda: engine.stats.running == 0 and engine.stats.aborted == 1)
        await wait_for(lambda: engine.stats.open_connections == conns_during - 1)
        assert engine.stats.completed == 0 or engine.stats.aborted == 1


async def test_raw_socket_garbage_and_slowloris(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, header_read_timeout_secs=0.5)

        def send_raw(data: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
                s.sendall(data)
                out = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return out
                    out += chunk

        loop = asyncio.get_running_loop()
        for raw in (b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a\""):
            out = await loop.run_in_executor(None, send_raw, raw)
            status = int(out.split(b" ", 2)[1])
            assert 400 <= status < 500, out
            assert b'"error"' in out
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            assert (await client.get("/liveness")).status_code == 200
