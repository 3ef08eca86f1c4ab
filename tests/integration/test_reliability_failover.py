"""A worker process SIGKILLed under load and restarted: no client sees a failure, its breaker opens, and
traffic comes back to it after the restart."""

from __future__ import annotations

import asyncio

import httpx

from herder.sim.fleet import SubprocessFleet, astart_subprocess_fleet
from tests.conftest import GatewayFactory
from tests.integration.reliability_support import CHAT, chat
from tests.waiting import wait_for, wait_for_async


async def _served(client: httpx.AsyncClient, url: str) -> int:
    """Inference requests the worker process at `url` has served (its own counter; resets on restart)."""
    stats = (await client.get(f"{url}/sim/stats")).json()
    return int(stats["inference_requests"])


async def test_sigkill_and_restart_under_load(make_gateway: GatewayFactory) -> None:
    fleet: SubprocessFleet = await astart_subprocess_fleet(3, ttft_ms=5.0, itl_ms=1.0)
    try:
        gw = await make_gateway(
            worker_urls=fleet.urls,
            policy="round_robin",
            health_check_interval_secs=0.5,
            health_failure_threshold=3,
            health_success_threshold=1,
            cb_timeout_duration_secs=1.0,
            retry_initial_backoff_ms=5,
            metrics_port=0,
        )
        victim_url = fleet.urls[1]
        victim = gw.registry.find_by_url(victim_url)
        assert victim is not None
        failures: list[str] = []
        ok = 0
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gw.port}", timeout=30, limits=limits
        ) as client:

            async def load(k: int) -> None:
                nonlocal ok
                i = 0
                while not stop.is_set():
                    try:
                        r = await client.post(CHAT, json=chat(f"c{k} r{i}"))
                        if r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None:
                            ok += 1
                        else:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    i += 1

            tasks = [asyncio.create_task(load(k)) for k in range(8)]
            try:
                await wait_for(lambda: ok >= 60, timeout=20)
                before = [await _served(client, u) for u in fleet.urls]
                assert all(n > 0 for n in before), before

                fleet.workers[1].kill()  # SIGKILL: in-flight requests and pooled connections break
                killed_at_ok = ok
                # the breaker sees consecutive connection failures and opens (well before health checks give up)
                states: set[str] = set()

                async def victim_state() -> str:
                    infos = (await client.get("/workers")).json()["workers"]
                    state = next(str(i["circuit_breaker"]) for i in infos if i["url"] == victim_url)
                    states.add(state)
                    return state

                async def victim_open() -> bool:
                    return await victim_state() == "open"

                await wait_for_async(victim_open, timeout=15, interval=0.02,
                                     message=lambda: f"the breaker did not open; states seen {states}")
                metrics = (await client.get(f"http://127.0.0.1:{gw.metrics_port}/metrics")).text
                assert (
                    f'smg_worker_cb_transitions_total{{from="closed",to="open",worker="{victim_url}"}}'
                    in metrics
                )
                await wait_for(lambda: ok >= killed_at_ok + 60, timeout=20)  # the others carry the load

                await asyncio.to_thread(fleet.workers[1].start)  # a fresh process on the same port

                async def victim_serves() -> bool:
                    return await _served(client, victim_url) >= 20

                # traffic returns: the new process serves requests routed by the gateway
                await wait_for_async(victim_serves, timeout=20, interval=0.05,
                                     message="no traffic came back to the restarted worker")
                assert await victim_state() == "closed"
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
            after = [await _served(client, u) for u in fleet.urls]
        print(
            f"served before kill {before}; after restart (victim counts from 0) {after}; "
            f"ok {ok}; failures {len(failures)}; victim status {victim.status.value}; states seen {states}"
        )
        assert failures == []
        assert ok > killed_at_ok + 60
    finally:
        await asyncio.to_thread(fleet.close)
