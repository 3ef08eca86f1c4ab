"""The official openai SDK against `herder launch` (a real subprocess) in front of simulated workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from herder.sim.fleet import start_subprocess_fleet
from tests.waiting import http_ok, wait_for_process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    fleet = start_subprocess_fleet(2)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "herder", "launch", "--host", "127.0.0.1", "--port", str(port),
         "--worker-urls", *fleet.urls, "--prometheus-port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_process(lambda: http_ok(url + "/readiness"), proc, "the gateway", timeout=20, interval=0.1)
    except BaseException:
        proc.kill()
        fleet.close()
        raise
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        fleet.close()


@pytest.fixture
def client(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_the_workers_model(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["sim-model"]


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="sim-model", messages=[{"role": "user", "content": "Hello there"}],
                                          max_tokens=8)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens == 8
    assert resp.choices[0].finish_reason == "length"


def test_chat_streaming_ends_with_usage_and_done(client: openai.OpenAI, gateway_url: str) -> None:
    stream = client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "Stream please"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    # the raw stream ends with [DONE]
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json={
            "model": "sim-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
            "stream": True}, timeout=10) as raw:
        body = b"".join(raw.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]")
    # the same request non-streamed gives the same text (deterministic workers, relayed byte-faithfully)
    same = client.chat.completions.create(model="sim-model", messages=[{"role": "user", "content": "Stream please"}],
                                          max_tokens=6)
    assert same.choices[0].message.content == text


def test_completions_and_embeddings(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="sim-model", prompt="Once upon a time", max_tokens=5)
    assert resp.choices[0].text and resp.usage is not None and resp.usage.completion_tokens == 5
    emb = client.embeddings.create(model="sim-model", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 8
    norm = sum(x * x for x in emb.data[0].embedding)
    assert abs(norm - 1.0) < 1e-3


def test_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert info.value.response.headers["x-smg-error-code"] == "model_not_found"
    assert info.value.response.headers["x-request-id"].startswith("chatcmpl-")


def test_request_id_is_echoed(gateway_url: str) -> None:
    r = httpx.post(gateway_url + "/v1/chat/completions", json={
        "model": "sim-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
        headers={"x-correlation-id": "my-corr-id-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "my-corr-id-1"
    assert os.environ.get("NOPE") is None
