"""SimFleet (in-process), subprocess workers (SIGKILL, die_after, restart) and the ``herder sim`` CLI."""

from __future__ import annotations

import asyncio
import signal

import httpx2 as httpx
import pytest
from openai import AsyncOpenAI

from herder.sim.cli import build_parser, config_from_args, main, serve
from herder.sim.engine import SimConfig
from herder.sim.fleet import SimFleet, astart_subprocess_fleet, config_args
from tests.waiting import wait_for


async def test_sim_fleet_kill_and_restart() -> None:
    async with SimFleet(n=3, output_tokens=2) as fleet:
        assert len(set(fleet.urls)) == 3
        async with httpx.AsyncClient() as h:
            for u in fleet.urls:
                assert (await h.get(u + "/health")).status_code == 200
            client = AsyncOpenAI(base_url=fleet.urls[1] + "/v1", api_key="x", max_retries=0)
            r = await client.completions.create(model="m", prompt="x")
            assert r.usage.completion_tokens == 2
            assert fleet.engines[1].stats.completed == 1 and fleet.engines[0].stats.completed == 0
            url = fleet.urls[1]
            await fleet.kill(1)
            async with httpx.AsyncClient() as fresh:  # a new connection: the listener is gone
                with pytest.raises(httpx.ConnectError):
                    await fresh.get(url + "/health")
            await fleet.restart(1)
            assert fleet.urls[1] == url
            assert (await h.get(url + "/health")).status_code == 200
            assert fleet.stats(1)["completed"] == 0  # a fresh engine


async def test_subprocess_worker_die_after_sigkill_and_restart() -> None:
    fleet = await astart_subprocess_fleet(1, die_after=1, output_tokens=3)
    w = fleet.workers[0]
    try:
        async with httpx.AsyncClient() as h:
            ok = await h.post(w.url + "/v1/completions", json={"prompt": "hi"})
            assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3
            with pytest.raises(httpx.TransportError):
                await h.post(w.url + "/v1/completions", json={"prompt": "hi"})
        assert w.proc is not None
        assert await asyncio.to_thread(w.proc.wait, 10) == 1  # os._exit(1)
        assert not w.alive and "die_after" in w.stderr_text()
        await asyncio.to_thread(w.restart)
        async with httpx.AsyncClient() as h:
            assert (await h.get(w.url + "/health")).status_code == 200
        await asyncio.to_thread(w.kill)
        assert w.proc.returncode == -signal.SIGKILL
        async with httpx.AsyncClient() as h:
            with pytest.raises(httpx.ConnectError):
                await h.get(w.url + "/health")
    finally:
        await asyncio.to_thread(fleet.close)


def test_config_args_roundtrip_through_cli_parser() -> None:
    cfg = SimConfig(
        model="m2", ttft_ms=5.0, prefill_tps=100.0, itl_ms=1.5, itl_per_running_ms=0.25, cache_blocks=7,
        output_tokens=3, error_rate=0.5, error_status=502, retry_after_s=2.0, stall_after_tokens=4,
        die_after=9, seed=11, embedding_dim=8, max_running_requests=5,
    )  # fmt: skip
    ns = build_parser().parse_args(["--base-port", "0", *config_args(cfg)])
    assert config_from_args(ns) == cfg


def test_cli_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--http-count", "0"], ["--error-rate", "2"], ["--itl-ms", "-1"]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 2
    assert "error" in capsys.readouterr().err


async def test_cli_serve_prints_urls_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    ns = build_parser().parse_args(["--http-count", "2", "--base-port", "0", "--model", "cli-model"])
    stop = asyncio.Event()
    task = asyncio.create_task(serve(ns, stop))
    out = ""

    def printed_both_urls() -> bool:
        nonlocal out
        out += capsys.readouterr().out
        return out.count("http://") == 2 or task.done()

    await wait_for(printed_both_urls, timeout=5, interval=0.01, message=lambda: f"printed only {out!r}")
    urls = out.split()
    assert len(urls) == 2
    async with httpx.AsyncClient() as h:
        for u in urls:
            models = (await h.get(u + "/v1/models")).json()
            assert models["data"][0]["id"] == "cli-model"
    stop.set()
    assert await task == 0
    async with httpx.AsyncClient() as h:
        with pytest.raises(httpx.ConnectError):
            await h.get(urls[0] + "/health")
