"""/workers admin API, and workers added and removed while a load runs: no failed requests, drains complete."""

from __future__ import annotations

import asyncio

import httpx

from herder.sim.fleet import SimFleet
from herder.workers.worker import WorkerStatus
from tests.conftest import GatewayFactory
from tests.waiting import wait_for


async def test_worker_crud(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=2) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls[:1])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            listed = (await client.get("/workers")).json()
            assert listed["total"] == 1 and listed["stats"]["healthy_workers"] == 1
            r = await client.post("/workers", json={"url": fleet.urls[1], "labels": {"zone": "a"},
                                                    "api_key": "secret", "priority": 7})
            assert r.status_code == 202 and r.json()["status"] == "accepted"
            wid = r.json()["worker_id"]
            await wait_for(lambda: gw.registry.get(wid) is not None
                           and gw.registry.get(wid).status is WorkerStatus.READY)  # type: ignore[union-attr]
            info = (await client.get(f"/workers/{wid}")).json()
            assert info["labels"] == {"zone": "a"} and info["priority"] == 7 and "api_key" not in info
            assert info["model_id"] == "sim-model" and info["is_healthy"]
            assert (await client.post("/workers", json={"url": fleet.urls[1]})).status_code == 409
            assert (await client.post("/workers", json={"url": "ftp://x"})).status_code == 400
            assert (await client.post("/workers", json={"nope": 1})).status_code == 400
            r = await client.patch(f"/workers/{wid}", json={"priority": 9, "cost": 2.5})
            assert r.status_code == 202
            assert (await client.get(f"/workers/{wid}")).json()["priority"] == 9
            assert (await client.patch(f"/workers/{wid}", json={"url": "x"})).status_code == 400
            assert (await client.get("/workers/doesnotexist")).status_code == 404
            assert (await client.delete(f"/workers/{wid}")).status_code == 202
            await wait_for(lambda: gw.registry.get(wid) is None)
            assert (await client.get("/workers")).json()["total"] == 1


async def test_add_and_remove_under_load(make_gateway: GatewayFactory) -> None:
    async with SimFleet(n=3, ttft_ms=5.0, itl_ms=2.0) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls[:2], policy="round_robin")
        statuses: list[int] = []
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:

            async def load(k: int) -> None:
                i = 0
                while not stop.is_set():
                    stream = i % 2 == 0
                    body = {"messages": [{"role": "user", "content": f"c{k} r{i}"}], "max_tokens": 20,
                            "stream": stream}
                    r = await client.post("/v1/chat/completions", json=body)
                    ok = r.status_code == 200 and (not stream or r.text.rstrip().endswith("[DONE]"))
                    statuses.append(200 if ok else r.status_code or 599)
                    i += 1

            tasks = [asyncio.create_task(load(k)) for k in range(8)]
            await wait_for(lambda: len(statuses) >= 20)  # the load is running
            r = await client.post("/workers", json={"url": fleet.urls[2]})
            new_id = r.json()["worker_id"]
            await wait_for(lambda: (w := gw.registry.get(new_id)) is not None and w.status is WorkerStatus.READY)
            # the added worker takes traffic
            await wait_for(lambda: fleet.engines[2].stats.inference_requests > 0)
            # remove a worker that has requests in flight: they drain, nothing new goes there
            victim = gw.registry.find_by_url(fleet.urls[0])
            assert victim is not None
            await wait_for(lambda: victim.load > 0)
            await client.delete(f"/workers/{victim.id}")
            await wait_for(lambda: gw.registry.get(victim.id) is None, timeout=10)
            frozen = fleet.engines[0].stats.inference_requests
            after_removal = len(statuses)
            await wait_for(lambda: len(statuses) >= after_removal + 40)  # more load after the removal
            stop.set()
            await asyncio.gather(*tasks)
        assert fleet.engines[0].stats.inference_requests == frozen
        assert fleet.engines[0].stats.aborted == 0  # drained requests completed, none were cut
        assert statuses and set(statuses) == {200}, [s for s in statuses if s != 200]
