"""herder.loadgen.client: SSE decoding, stream accounting, and the HTTP client over real sockets."""

from __future__ import annotations

import itertools
import socket

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loadgen_fakeserver import FakeServer

from herder.loadgen.client import (
    HttpClient,
    RequestResult,
    SSEDecoder,
    StreamAccumulator,
    parse_base_url,
)

# -- SSE decoder (sans-I/O) ------------------------------------------------------------------------------------

SSE_SAMPLE = (
    b": keep-alive comment\n\n"
    b'data: {"a":1}\n\n'
    b"event: ping\r\ndata: two\r\ndata: lines\r\n\r\n"
    b"data:nospace\n\n"
    b"id: 7\n\n"  # an event without data dispatches nothing
    b"data: [DONE]\n\n"
)
SSE_EXPECTED = [b'{"a":1}', b"two\nlines", b"nospace", b"[DONE]"]


def test_sse_decoder_whole() -> None:
    dec = SSEDecoder()
    assert dec.feed(SSE_SAMPLE) + dec.finish() == SSE_EXPECTED


def test_sse_decoder_flushes_unterminated_event_on_finish() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: x\n\ndata: tail") == [b"x"]
    assert dec.finish() == [b"tail"]


def test_sse_decoder_event_per_chunk() -> None:
    dec = SSEDecoder()
    chunks = [b"data: x\n\n", b"data: a\ndata: b\n\n", b"data: cr\r\n\n", b"data:\n\n", b"data: {}\n\n"]
    assert [p for c in chunks for p in dec.feed(c)] == [b"x", b"a\nb", b"cr", b"", b"{}"]
    # A pending partial event must not be bypassed by a whole-event chunk.
    dec = SSEDecoder()
    assert dec.feed(b"data: first") == []
    assert dec.feed(b"\n\n") == [b"first"]
    assert dec.feed(b"data: p1\n") == [] and dec.feed(b"data: p2\n\n") == [b"p1\np2"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SSE_SAMPLE)), max_size=12))
def test_sse_decoder_chunk_splits_do_not_matter(cuts: list[int]) -> None:
    dec = SSEDecoder()
    out: list[bytes] = []
    points = [0, *sorted(cuts), len(SSE_SAMPLE)]
    for a, b in itertools.pairwise(points):
        out.extend(dec.feed(SSE_SAMPLE[a:b]))
    out.extend(dec.finish())
    assert out == SSE_EXPECTED


# -- stream accounting (sans-I/O, synthetic clock) -------------------------------------------------------------


def _ev(obj: object) -> bytes:
    return orjson.dumps(obj)


def test_stream_accumulator_times_content_events_only() -> None:
    res = RequestResult(start=10.0)
    acc = StreamAccumulator(res)
    acc.event(_ev({"choices": [{"delta": {"role": "assistant"}}]}), 10.5)  # no content
    acc.event(_ev({"choices": [{"delta": {"content": ""}}]}), 10.6)  # empty content
    acc.event(_ev({"choices": [{"delta": {"content": "Hel"}}]}), 11.0)
    acc.event(_ev({"choices": [{"delta": {"reasoning_content": "hmm"}}]}), 11.25)
    acc.event(_ev({"choices": [{"delta": {"content": "lo"}}]}), 12.0)
    acc.event(
        _ev(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 40,
                    "completion_tokens": 3,
                    "prompt_tokens_details": {"cached_tokens": 32},
                },
            }
        ),
        12.1,
    )
    acc.event(b"[DONE]", 12.2)
    acc.finish()
    assert res.ttft == pytest.approx(1.0)
    assert res.itls == pytest.approx([0.25, 0.75])
    assert res.content_events == 3
    assert res.text == "Hello"  # reasoning is timed but not part of the answer text
    assert (res.prompt_tokens, res.completion_tokens, res.cached_tokens) == (40, 3, 32)
    assert res.saw_done


def test_stream_accumulator_completions_and_error_event() -> None:
    res = RequestResult(start=0.0)
    acc = StreamAccumulator(res)
    acc.event(_ev({"choices": [{"text": "a"}]}), 1.0)
    acc.event(_ev({"choices": [{"text": "b"}]}), 3.0)
    acc.event(_ev({"error": {"message": "engine died"}}), 4.0)
    acc.event(b"not json", 5.0)
    acc.finish()
    assert res.ttft == 1.0 and res.itls == [2.0] and res.text == "ab"
    assert res.error == "engine died"
    assert res.cached_tokens is None and res.prompt_tokens is None


def test_parse_base_url() -> None:
    u = parse_base_url("http://127.0.0.1:30000")
    assert (u.scheme, u.host, u.port, u.prefix) == ("http", "127.0.0.1", 30000, "")
    assert parse_base_url("localhost:8000/v1/").prefix == ""
    assert parse_base_url("https://api.example.com/openai/v1").port == 443
    assert parse_base_url("https://api.example.com/openai/v1").prefix == "/openai"
    assert parse_base_url("http://h").host_header == "h"
    with pytest.raises(ValueError):
        parse_base_url("ftp://h:1")


# -- the client over real sockets ------------------------------------------------------------------------------


def _chat(n: int, stream: bool, system: bool = False) -> bytes:
    messages = [{"role": "user", "content": "one two three four"}]
    if system:
        messages.insert(0, {"role": "system", "content": "s1 s2 s3 s4 s5 s6"})
    body: dict[str, object] = {"model": "m", "messages": messages, "max_tokens": n, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def test_stream_usage_ttft_and_worker(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-delay-ms": "20"})
    res = await client.post("/v1/chat/completions", _chat(5, True, system=True), stream=True)
    await client.close()
    answer = fake_server.responses[-1]
    assert res.ok and res.status == 200 and res.error is None
    assert res.text == answer.text
    assert res.content_events == 5 and len(res.itls) == 4
    assert (res.prompt_tokens, res.completion_tokens) == (10, 5)
    assert res.cached_tokens == answer.cached_tokens == 5
    assert res.worker == answer.worker == "w0"
    assert res.saw_done
    assert res.ttft is not None
    # The server sends a role-only event at once and waits 20 ms before the first content event:
    # TTFT must be measured at the content event, so it cannot be below that pause (a lower bound only:
    # load can lengthen it, never shorten it; the margin covers the event loop's timer resolution).
    assert res.ttft >= 0.015
    assert all(gap >= 0 for gap in res.itls)
    assert res.ttft + sum(res.itls) <= res.e2e + 1e-9


async def test_non_streamed_json(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-worker": "off"})
    res = await client.post("/v1/chat/completions", _chat(3, False), stream=False)
    await client.close()
    assert res.ok and res.ttft is None and res.itls == []
    assert res.text == fake_server.responses[-1].text
    assert (res.prompt_tokens, res.completion_tokens, res.cached_tokens) == (4, 3, 0)
    assert res.worker is None
    assert fake_server.requests[-1].headers["accept"] == "application/json"


async def test_completions_stream(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url)
    body = orjson.dumps(
        {
            "model": "m",
            "prompt": "a b c",
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    res = await client.post("/v1/completions", body, stream=True)
    await client.close()
    assert res.ok and res.content_events == 4 and res.text == "tok0 tok1 tok2 tok3 "
    assert (res.prompt_tokens, res.completion_tokens) == (3, 4)


async def test_server_ignoring_stream_flag(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "json-for-stream"})
    res = await client.post("/v1/chat/completions", _chat(2, True), stream=True)
    await client.close()
    assert res.ok and res.text == "tok0 tok1 " and res.completion_tokens == 2 and res.content_events == 0


async def test_error_status(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "error"})
    res = await client.post("/v1/chat/completions", _chat(2, True), stream=True)
    # The connection stays usable after an error response.
    res2 = await client.post("/v1/chat/completions", _chat(2, False), stream=False)
    await client.close()
    assert not res.ok and res.status == 503 and res.error == "overloaded"
    assert not res2.ok and res2.status == 503
    assert client.connections_opened == 1


async def test_keep_alive_reuses_one_connection(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, api_key="sekret")
    results = [
        await client.post("/v1/chat/completions", _chat(2, i % 2 == 0), stream=i % 2 == 0) for i in range(6)
    ]
    await client.close()
    assert all(r.ok for r in results)
    assert fake_server.connections == 1 and client.connections_opened == 1
    assert all(s.headers["authorization"] == "Bearer sekret" for s in fake_server.requests)


async def test_body_delimited_by_close(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "eof"})
    first = await client.post("/v1/chat/completions", _chat(3, False), stream=False)
    second = await client.post("/v1/chat/completions", _chat(3, False), stream=False)
    await client.close()
    assert first.ok and second.ok and first.text == "tok0 tok1 tok2 " and first.completion_tokens == 3
    assert client.connections_opened == 2


async def test_server_closing_idle_connection_is_survived(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "drop"})
    results = [await client.post("/v1/chat/completions", _chat(2, True), stream=True) for _ in range(3)]
    await client.close()
    assert [r.ok for r in results] == [True, True, True]
    assert client.connections_opened == 3


async def test_stream_cut_midway(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "cut"})
    res = await client.post("/v1/chat/completions", _chat(4, True), stream=True)
    await client.close()
    assert not res.ok and res.status == 200 and (res.error or "").startswith("connection lost")
    assert res.content_events == 1 and res.ttft is not None
    assert client.connections_opened == 1  # bytes had arrived: never resent


async def test_timeout(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "hang"}, timeout=0.2)
    res = await client.post("/v1/chat/completions", _chat(2, True), stream=True)
    await client.close()
    assert not res.ok and res.error == "timeout" and res.status == 0


async def test_connection_refused_is_a_result_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    client = HttpClient(f"http://127.0.0.1:{port}")
    res = await client.post("/v1/chat/completions", _chat(2, True), stream=True)
    assert not res.ok and res.status == 0 and res.error


async def test_get_json(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url)
    doc = await client.get_json("/v1/models")
    await client.close()
    assert doc["data"][0]["id"] == "fake-model"
    assert (
        fake_server.requests[-1].method == "GET" and "content-length" not in fake_server.requests[-1].headers
    )
