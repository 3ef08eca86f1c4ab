"""Helpers shared by the reliability, shutdown and fuzz tests (not a test module)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from herder.server.http import Reply, Request
from herder.sim.http_worker import SimHttpWorker

CHAT = "/v1/chat/completions"


@dataclass(slots=True)
class Arrival:
    """One inference request as the worker saw it arrive."""

    at: float  # time.monotonic() (same clock as the test: in-process worker)
    path: str
    completed_before: int  # requests this worker had completed when this one arrived


@dataclass(slots=True)
class Recorder:
    arrivals: list[Arrival] = field(default_factory=list)


class RecordingWorker(SimHttpWorker):
    """A simulated worker that notes when each inference request arrives."""

    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)
        self.recorder = Recorder()

    async def handle(self, req: Request, reply: Reply) -> None:
        if req.method == b"POST" and req.path.startswith("/v1/"):
            self.recorder.arrivals.append(Arrival(time.monotonic(), req.path, self.engine.stats.completed))
        await super().handle(req, reply)

    @property
    def arrivals(self) -> list[Arrival]:
        return self.recorder.arrivals


async def start_workers(n: int, **fields: Any) -> list[RecordingWorker]:
    workers = [RecordingWorker(seed=i, **fields) for i in range(n)]
    for w in workers:
        await w.start()
    return workers


async def stop_workers(workers: list[RecordingWorker]) -> None:
    for w in workers:
        await w.stop()


def chat(
    content: str = "hello", *, stream: bool = False, max_tokens: int = 8, **extra: Any
) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": stream,
            **extra}  # fmt: skip


def assert_envelope(r: httpx.Response, status: int, code: str | None = None) -> None:
    """An OpenAI-shaped error with the code repeated in X-SMG-Error-Code and a request id."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code", "param"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    assert r.headers["x-smg-error-code"] == err["code"]
    assert r.headers.get("x-request-id")
