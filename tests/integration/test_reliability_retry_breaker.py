"""Retries honour Retry-After and the attempt budget; the breaker opens on 10 consecutive failures (never on 4xx),
half-opens after its timeout and closes after 3 successes. Counts are taken at the workers."""

from __future__ import annotations

import asyncio
import itertools

import httpx

from tests.conftest import GatewayFactory
from tests.integration.reliability_support import CHAT, assert_envelope, chat, start_workers, stop_workers
from tests.waiting import wait_for


async def test_retry_after_is_honoured_on_another_worker(make_gateway: GatewayFactory) -> None:
    """A 503 with Retry-After: 1 is retried about a second later, on the other worker."""
    (bad,) = await start_workers(1, error_rate=1.0, error_status=503, retry_after_s=1.0)
    (good,) = await start_workers(1)
    try:
        gw = await make_gateway(
            worker_urls=[bad.url, good.url],
            policy="round_robin",
            retry_max_retries=3,
            retry_initial_backoff_ms=1,
            retry_jitter_factor=0.0,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            # round robin: one of two requests starts on the failing worker
            for i in range(2):
                r = await client.post(CHAT, json=chat(f"r{i}"))
                assert r.status_code == 200, r.text
        # each request is served exactly once; each one that met the 503 reached the good worker >= ~1 s later
        assert len(good.arrivals) == 2 and bad.arrivals, (bad.arrivals, good.arrivals)
        for failed in bad.arrivals:
            retry = min((a.at for a in good.arrivals if a.at > failed.at), default=None)
            assert retry is not None
            gap = retry - failed.at
            print(f"503 at the bad worker; the retry reached the good worker {gap:.3f} s later")
            assert gap >= 0.9  # Retry-After: 1 (the configured backoff alone would be 1 ms)
        assert bad.engine.stats.errors_injected == len(bad.arrivals)
    finally:
        await stop_workers([bad, good])


async def test_attempts_never_exceed_max_retries(make_gateway: GatewayFactory) -> None:
    workers = await start_workers(2, error_rate=1.0, error_status=503, retry_after_s=1.0)
    try:
        gw = await make_gateway(
            worker_urls=[w.url for w in workers],
            policy="round_robin",
            retry_max_retries=3,
            retry_initial_backoff_ms=1,
            retry_jitter_factor=0.0,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            r = await client.post(CHAT, json=chat())
        assert r.status_code == 503  # the last worker answer is relayed
        arrivals = sorted(a.at for w in workers for a in w.arrivals)
        print(f"attempts seen by the workers: {len(arrivals)} (max 3)")
        assert len(arrivals) == 3
        assert [len(w.arrivals) for w in workers] in ([2, 1], [1, 2])  # alternates away from the failed one
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(arrivals))
        # with retries disabled: exactly one attempt
        gw2 = await make_gateway(worker_urls=[w.url for w in workers], disable_retries=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw2.port}", timeout=30) as client:
            r = await client.post(CHAT, json=chat())
        assert r.status_code == 503
        assert sum(len(w.arrivals) for w in workers) == 4
    finally:
        await stop_workers(workers)


async def _breaker_state(client: httpx.AsyncClient) -> str:
    workers = (await client.get("/workers")).json()["workers"]
    assert len(workers) == 1
    return str(workers[0]["circuit_breaker"])


async def test_breaker_opens_half_opens_and_closes(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(
            worker_urls=[worker.url], disable_retries=True, cb_timeout_duration_secs=1.0, metrics_port=0
        )
        w = gw.registry.find_by_url(worker.url)
        assert w is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:

            async def send(status: int | None) -> int:
                headers = {"x-sim-status": str(status)} if status else {}
                return (await client.post(CHAT, json=chat(), headers=headers)).status_code

            # 4xx never count as failures, however many
            assert [await send(400) for _ in range(15)] == [400] * 15
            assert await _breaker_state(client) == "closed"
            # failures must be consecutive: a 400 in between resets the count
            assert [await send(500) for _ in range(9)] == [500] * 9
            assert await send(400) == 400
            assert [await send(500) for _ in range(9)] == [500] * 9
            assert await _breaker_state(client) == "closed"
            assert await send(500) == 500  # the 10th consecutive failure
            assert await _breaker_state(client) == "open"
            served = len(worker.arrivals)
            r = await client.post(CHAT, json=chat())
            assert_envelope(r, 503, "no_available_workers")
            assert len(worker.arrivals) == served  # an open breaker sends nothing to the worker
            metrics = (await client.get(f"http://127.0.0.1:{gw.metrics_port}/metrics")).text
            assert f'smg_worker_cb_state{{worker="{worker.url}"}} 1' in metrics
            # after the timeout: half-open; any failure re-opens it
            await wait_for(w.breaker.can_execute)
            assert await _breaker_state(client) == "half_open"
            assert await send(500) == 500
            assert await _breaker_state(client) == "open"
            await wait_for(w.breaker.can_execute)
            # three successes close it (two are not enough)
            assert [await send(None) for _ in range(2)] == [200, 200]
            assert await _breaker_state(client) == "half_open"
            assert await send(None) == 200
            assert await _breaker_state(client) == "closed"
            metrics = (await client.get(f"http://127.0.0.1:{gw.metrics_port}/metrics")).text
            assert f'smg_worker_cb_state{{worker="{worker.url}"}} 0' in metrics
        print(
            f"worker saw {len(worker.arrivals)} requests; errors injected {worker.engine.stats.errors_injected}"
        )
    finally:
        await stop_workers([worker])


async def test_breaker_open_worker_is_skipped_while_others_serve(make_gateway: GatewayFactory) -> None:
    """With retries, a failing worker's breaker opens and clients see no failure."""
    bad, good = await start_workers(2)
    bad.engine.update(error_rate=1.0, error_status=500)
    try:
        gw = await make_gateway(
            worker_urls=[bad.url, good.url],
            policy="round_robin",
            retry_initial_backoff_ms=1,
            cb_timeout_duration_secs=60,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            # one at a time, so no request is already on its way to the worker when the breaker opens
            statuses = [(await client.post(CHAT, json=chat(f"x{i}"))).status_code for i in range(30)]
            assert statuses == [200] * 30
            w = gw.registry.find_by_url(bad.url)
            assert w is not None and w.breaker.state.label == "open"
            frozen = len(bad.arrivals)
            results = await asyncio.gather(*(client.post(CHAT, json=chat(f"y{i}")) for i in range(20)))
            assert [r.status_code for r in results] == [200] * 20
        print(f"bad worker attempts {frozen} (breaker opened at 10), good worker served {len(good.arrivals)}")
        assert frozen == 10 and len(bad.arrivals) == frozen
    finally:
        await stop_workers([bad, good])
