"""herder's gRPC path against the real MLX servicer (smg-grpc-servicer) serving SmolLM2-135M on CPU, and the
same request through the real SMG (`smg launch`) against the same worker.

Needs `scripts/setup-e2e-grpc.sh` (about 2.5 minutes with a PyPI mirror; about 1 GB under ~/.cache/herder-e2e).
Skipped, with that reason, only when the script has not been run.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.e2e.conftest import free_port
from tests.waiting import http_ok, wait_for_process

pytestmark = pytest.mark.e2e

E2E = Path(os.environ.get("HERDER_E2E_DIR", str(Path.home() / ".cache/herder-e2e")))
VENV_BIN = E2E / "mlx-venv" / "bin"
MODEL_DIR = E2E / "smollm2-135m"
# Through MLX (F32 weights dequantized from the Q4_1 GGUF) greedy SmolLM2 answers "What is the capital of
# France?" in broken French, through SMG exactly as through herder; this phrasing gets "...is Paris.".
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name the capital of France."},
]

if not (E2E / ".ready").exists():
    pytest.skip(
        f"MLX gRPC e2e environment missing: run scripts/setup-e2e-grpc.sh (looked in {E2E})",
        allow_module_level=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def mlx_worker() -> Iterator[str]:
    """The MLX gRPC servicer serving the SmolLM2 folder; yields its grpc:// URL."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [str(VENV_BIN / "python"), "-m", "smg_grpc_servicer.mlx.server", "--model", str(MODEL_DIR),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip

    def healthy() -> bool:
        import asyncio

        from herder.routing.grpc.client import GrpcWorkerClient

        async def probe() -> bool:
            async with GrpcWorkerClient(f"grpc://127.0.0.1:{port}", "mlx", detect_timeout=1.0) as c:
                return await c.health(timeout=1.0)

        try:
            return asyncio.run(probe())
        except Exception:
            return False

    try:
        wait_for_process(healthy, proc, "MLX servicer", timeout=120.0, interval=0.3)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _answer(base: str, model: str, stream: bool) -> str:
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    if not stream:
        resp = client.chat.completions.create(
            model=model,
            messages=QUESTION,
            temperature=0,  # type: ignore[arg-type]
            max_tokens=24,
        )
        return resp.choices[0].message.content or ""
    chunks = client.chat.completions.create(
        model=model,
        messages=QUESTION,
        temperature=0,  # type: ignore[arg-type]
        max_tokens=24,
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_herder_chat_over_mlx_grpc_answers_paris(make_gateway: GatewayFactory, mlx_worker: str) -> None:
    import asyncio

    gw = await make_gateway(worker_urls=[mlx_worker], worker_startup_timeout_secs=60.0)
    models = gw.registry.models()
    assert len(models) == 1
    worker = next(iter(gw.registry.workers.values()))
    assert worker.runtime_type == "mlx"
    assert gw.is_ready()  # the tokenizer was registered (from the worker's folder or its GetTokenizer bundle)
    base = f"http://127.0.0.1:{gw.port}"
    text = await asyncio.to_thread(_answer, base, models[0], False)
    assert "Paris" in text
    streamed = await asyncio.to_thread(_answer, base, models[0], True)
    assert streamed == text  # greedy: streaming and not give the same text
    assert worker.load == 0

    # The same request through the real SMG against the same worker gives the same text.
    port = free_port()
    smg = subprocess.Popen(
        [str(VENV_BIN / "smg"), "launch", "--host", "127.0.0.1", "--port", str(port), "--worker-urls", mlx_worker,
         "--prometheus-port", str(free_port()), "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    smg_base = f"http://127.0.0.1:{port}"

    try:
        await asyncio.to_thread(
            wait_for_process, lambda: http_ok(smg_base + "/readiness"), smg, "smg launch", 120.0, 0.3
        )
        smg_models = httpx.get(smg_base + "/v1/models", timeout=5).json()["data"]
        smg_text = await asyncio.to_thread(_answer, smg_base, smg_models[0]["id"], False)
    finally:
        _stop(smg)
    assert smg_text == text
