"""herder.loadgen.runner: closed and open loop against the fake server (real sockets)."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import orjson
import pytest
from loadgen_fakeserver import FakeServer

from herder.loadgen.client import HttpClient
from herder.loadgen.runner import Progress, RunConfig, run
from herder.loadgen.workloads import BenchRequest, Workload, WorkloadConfig, make_workload


def _wl(kind: str = "random", seed: int = 0, turns: int = 4) -> WorkloadConfig:
    return WorkloadConfig(
        kind=kind, model="fake-model", max_tokens=4, input_min=3, input_max=8, seed=seed, turns=turns
    )


async def test_closed_loop_fixed_concurrency_n_requests(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, pool_size=4)
    result = await run(client, make_workload(_wl()), RunConfig(concurrency=4, num_requests=20))
    await client.close()
    assert len(result.records) == 20
    assert sorted(r.index for r in result.records) == list(range(20))
    assert all(r.ok and r.status == 200 for r in result.records)
    assert len(fake_server.requests) == 20
    # Closed loop with 4 workers never needs more than 4 keep-alive connections.
    assert 1 <= fake_server.connections <= 4 and result.connections_opened == fake_server.connections
    served = Counter(a.worker for a in fake_server.responses)
    assert Counter(r.worker for r in result.records) == served
    assert sum(r.completion_tokens or 0 for r in result.records) == 20 * 4
    assert result.duration > 0
    assert all(0 <= r.start <= result.duration for r in result.records)


async def test_warmup_is_sent_but_not_recorded(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url)
    result = await run(
        client,
        make_workload(_wl(seed=1)),
        RunConfig(concurrency=2, num_requests=5, warmup=3),
        warmup_workload=make_workload(_wl(seed=99)),
    )
    await client.close()
    assert len(result.records) == 5 and result.warmup_requests == 3
    assert len(fake_server.requests) == 8
    # The measured requests are exactly the measured workload's first five, not warm-up prompts.
    expected = make_workload(_wl(seed=1))
    bodies = [expected.next().body for _ in range(5)]
    sent = [orjson.dumps(s.body) for s in fake_server.requests[3:]]
    assert sorted(sent) == sorted(orjson.dumps(orjson.loads(b)) for b in bodies)


async def test_open_loop_poisson(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url)
    cfg = RunConfig(rps=500.0, max_in_flight=3, num_requests=12, seed=5)
    assert cfg.in_flight_cap() == 3
    result = await run(client, make_workload(_wl()), cfg)
    await client.close()
    assert len(result.records) == 12 and all(r.ok for r in result.records)
    assert fake_server.connections <= 3


async def test_duration_stops_issuing(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url)
    result = await run(client, make_workload(_wl()), RunConfig(concurrency=2, duration=0.2))
    await client.close()
    assert result.records and all(r.ok for r in result.records)
    assert len(fake_server.requests) == len(result.records)


async def test_multi_turn_carries_server_answers(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url)
    cfg = _wl("multi-turn", turns=3)
    result = await run(client, make_workload(cfg), RunConfig(concurrency=2, num_requests=12))
    await client.close()
    assert len(result.records) == 12
    answers = {a.text for a in fake_server.responses}
    follow_ups = [s for s in fake_server.requests if len(s.body["messages"]) > 1]
    assert follow_ups
    for seen in follow_ups:
        roles = [m["role"] for m in seen.body["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
        assert all(m["content"] in answers for m in seen.body["messages"] if m["role"] == "assistant")
    assert max(r.turn for r in result.records) == 2


class _StopAfter(Workload):
    """Wraps a workload and sets `stop` when the n-th request is drawn."""

    def __init__(self, inner: Workload, n: int, stop: asyncio.Event) -> None:
        super().__init__(inner.cfg)
        self.inner, self.n, self.stop = inner, n, stop

    def next(self) -> BenchRequest:
        req = self.inner.next()
        if req.index + 1 >= self.n:
            self.stop.set()
        return req


@pytest.mark.parametrize("rps", [None, 1000.0])
async def test_stop_event_ends_run_and_keeps_finished_requests(
    fake_server: FakeServer, rps: float | None
) -> None:
    stop = asyncio.Event()
    client = HttpClient(fake_server.url)
    wl = _StopAfter(make_workload(_wl()), 3, stop)
    result = await run(client, wl, RunConfig(concurrency=1, rps=rps, num_requests=50), stop=stop)
    await client.close()
    assert len(result.records) == 3 and all(r.ok for r in result.records)
    assert len(fake_server.requests) == 3


async def test_errors_are_recorded(fake_server: FakeServer) -> None:
    client = HttpClient(fake_server.url, extra_headers={"x-test-mode": "error"})
    result = await run(client, make_workload(_wl()), RunConfig(concurrency=2, num_requests=4))
    await client.close()
    assert [r.status for r in result.records] == [503] * 4
    assert not any(r.ok for r in result.records)


async def test_progress_bar_writes_to_given_stream(fake_server: FakeServer) -> None:
    out = io.StringIO()
    client = HttpClient(fake_server.url)
    await run(
        client,
        make_workload(_wl()),
        RunConfig(concurrency=2, num_requests=6, progress=True),
        progress_out=out,
    )
    await client.close()
    text = out.getvalue()
    assert "6/6 req" in text and text.endswith("\n")


def test_progress_line_counts() -> None:
    p = Progress(io.StringIO(), total=10, duration=None)
    p.done, p.errors = 5, 1
    line = p.line()
    assert "5/10 req" in line and "1 err" in line and "#" * 12 + "." * 12 in line


@pytest.mark.parametrize(
    "cfg",
    [
        RunConfig(concurrency=0),
        RunConfig(rps=0),
        RunConfig(num_requests=0),
        RunConfig(duration=0),
        RunConfig(warmup=-1),
        RunConfig(rps=1, max_in_flight=0),
    ],
)
def test_bad_run_config(cfg: RunConfig) -> None:
    with pytest.raises(ValueError):
        cfg.validate()


def test_request_limit_defaults() -> None:
    assert RunConfig().request_limit() == 200
    assert RunConfig(duration=5).request_limit() is None
    assert RunConfig(duration=5, num_requests=7).request_limit() == 7
