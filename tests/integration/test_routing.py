"""Policies through the real gateway: counts taken at the simulated workers, not inside herder."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx

from herder.sim.fleet import SimFleet
from tests.conftest import GatewayFactory
from tests.waiting import wait_for


def _chat(text: str, max_tokens: int = 2) -> dict[str, object]:
    return {"model": "sim-model", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


def _served(fleet: SimFleet) -> list[int]:
    return [int(e.stats.inference_requests) for e in fleet.engines]


async def test_round_robin_alternates_exactly(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=3) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, policy="round_robin")
        order = {w.url: i for i, w in enumerate(gw.registry.workers_for("sim-model"))}
        seen = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for i in range(12):
                before = _served(fleet)
                r = await client.post("/v1/chat/completions", json=_chat(f"q{i}"))
                assert r.status_code == 200
                after = _served(fleet)
                hit = [j for j in range(3) if after[j] != before[j]]
                assert len(hit) == 1
                seen.append(hit[0])
        by_index = [order[fleet.urls[j]] for j in seen]
        assert by_index == [(by_index[0] + k) % 3 for k in range(12)]


async def test_random_is_near_uniform(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=4) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, policy="random")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> int:
                async with sem:
                    return (await client.post("/v1/completions", json={
                        "model": "sim-model", "prompt": f"p{i}", "max_tokens": 1})).status_code

            codes = await asyncio.gather(*(one(i) for i in range(1000)))
        assert codes.count(200) == 1000
        counts = _served(fleet)
        assert sum(counts) == 1000
        assert all(180 < c < 320 for c in counts), counts


async def test_power_of_two_avoids_a_slow_worker(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=3, itl_ms=1.0) as fleet:
        fleet.engines[0].update(ttft_ms=150.0)  # worker 0 is slow: its in-flight load builds up
        gw = await make_gateway(worker_urls=fleet.urls, policy="power_of_two")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            sem = asyncio.Semaphore(24)

            async def one(i: int) -> None:
                async with sem:
                    r = await client.post("/v1/chat/completions", json=_chat(f"q{i}"))
                    assert r.status_code == 200

            await asyncio.gather(*(one(i) for i in range(300)))
        counts = _served(fleet)
        assert counts[0] < min(counts[1], counts[2]) / 2, counts


async def test_cache_aware_keeps_prefix_groups_together(make_gateway: GatewayFactory) -> None:
    rng = random.Random(11)
    systems = [f"System prompt {g}: " + " ".join(f"policy-{g}-{k}" for k in range(120)) for g in range(6)]
    async with SimFleet(n=3) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, policy="cache_aware")
        per_group: dict[int, Counter[str]] = {g: Counter() for g in range(6)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for i in range(240):
                g = rng.randrange(6)
                body = {"model": "sim-model", "max_tokens": 1, "messages": [
                    {"role": "system", "content": systems[g]}, {"role": "user", "content": f"question {i}"}]}
                before = _served(fleet)
                r = await client.post("/v1/chat/completions", json=body)
                assert r.status_code == 200
                after = _served(fleet)
                per_group[g][next(str(j) for j in range(3) if after[j] != before[j])] += 1
                # the worker reports prefix-cache hits for the shared system prompt after the first request
        for g, counts in per_group.items():
            assert counts.most_common(1)[0][1] / sum(counts.values()) >= 0.9, (g, counts)
        cached = sum(e.stats.cached_tokens for e in fleet.engines)
        prompt = sum(e.stats.prompt_tokens for e in fleet.engines)
        assert cached / prompt > 0.7


async def test_unknown_model_is_404_and_no_model_routes_anywhere(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            r = await client.post("/v1/chat/completions", json={**_chat("x"), "model": "gpt-x"})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            body = _chat("x")
            del body["model"]
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


async def test_busy_polling_gateway_answers_and_goes_quiet(make_gateway: GatewayFactory) -> None:
    """--busy-poll-us: requests (plain and streamed) are answered as without it; the poller is armed by each
    upstream send and stops once its window has passed."""
    async with SimFleet(n=2) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, busy_poll_us=300_000)
        poller = gw._poller
        assert poller is not None and not poller.polling
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            r = await client.post("/v1/chat/completions", json=_chat("hello there", 4))
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
            assert poller.polling  # armed by the send, its window (300 ms) not over yet
            async with client.stream("POST", "/v1/chat/completions",
                                     json={**_chat("stream please", 4), "stream": True}) as s:
                body = b"".join([chunk async for chunk in s.aiter_bytes()])
            assert s.status_code == 200 and body.rstrip().endswith(b"data: [DONE]")
        # the window closes 300 ms after the last send
        await wait_for(lambda: not poller.polling, timeout=5, interval=0.05,
                       message="the busy poller still polls 5 s after the last send")
        assert not poller.polling
        assert sum(_served(fleet)) == 2


async def test_busy_polling_is_off_by_default(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        assert gw._poller is None
