"""Health status machine over real probes (Failed workers keep being probed and come back, or are removed),
/readiness following it, and the data-plane / admin API keys."""

from __future__ import annotations

import httpx

from herder.workers.worker import WorkerStatus
from tests.conftest import GatewayFactory
from tests.integration.reliability_support import CHAT, assert_envelope, chat, start_workers, stop_workers
from tests.waiting import wait_for

FAST_HEALTH = {
    "health_check_interval_secs": 0.05,
    "health_failure_threshold": 1,
    "health_success_threshold": 1,
}


async def test_failed_worker_is_probed_and_returns(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(worker_urls=[worker.url], **FAST_HEALTH)
        w = gw.registry.find_by_url(worker.url)
        assert w is not None
        probes = worker.engine.stats.requests_by_path
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as client:
            assert (await client.get("/readiness")).status_code == 200
            await client.post(f"{worker.url}/sim/config", json={"healthy": False})
            await wait_for(lambda: w.status is WorkerStatus.FAILED)
            assert_envelope(await client.get("/readiness"), 503, "no_available_workers")
            assert_envelope(await client.post(CHAT, json=chat()), 503, "no_available_workers")
            seen = probes["/health"]
            await wait_for(lambda: probes["/health"] >= seen + 3)  # a Failed worker is still probed
            assert w.status is WorkerStatus.FAILED
            info = (await client.get("/workers")).json()["workers"][0]
            assert info["status"] == "failed" and info["is_healthy"] is False
            await client.post(f"{worker.url}/sim/config", json={"healthy": True})
            await wait_for(lambda: w.status is WorkerStatus.READY)
            assert (await client.get("/readiness")).status_code == 200
            r = await client.post(CHAT, json=chat())
            assert r.status_code == 200
        print(f"health probes answered: {probes['/health']}")
    finally:
        await stop_workers([worker])


async def test_failed_worker_is_removed_with_remove_unhealthy(make_gateway: GatewayFactory) -> None:
    workers = await start_workers(2)
    try:
        gw = await make_gateway(
            worker_urls=[w.url for w in workers], remove_unhealthy_workers=True, **FAST_HEALTH
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as client:
            await client.post(f"{workers[0].url}/sim/config", json={"healthy": False})
            await wait_for(lambda: gw.registry.find_by_url(workers[0].url) is None)
            listed = (await client.get("/workers")).json()
            assert [i["url"] for i in listed["workers"]] == [workers[1].url]
            assert (await client.get("/readiness")).status_code == 200  # the other worker is still ready
            assert (await client.post(CHAT, json=chat())).status_code == 200
            await client.post(f"{workers[1].url}/sim/config", json={"healthy": False})
            await wait_for(lambda: len(gw.registry) == 0)
            assert_envelope(await client.get("/readiness"), 503)
            # a removed worker is not probed any more, even once it is healthy again
            await client.post(f"{workers[1].url}/sim/config", json={"healthy": True})
            seen = workers[1].engine.stats.requests_by_path["/health"]
            rounds = gw.manager.health_rounds
            await wait_for(lambda: gw.manager.health_rounds >= rounds + 3)  # several health-check rounds
            assert (await client.get("/workers")).json()["workers"] == []
            assert workers[1].engine.stats.requests_by_path["/health"] <= seen + 1
    finally:
        await stop_workers(workers)


async def test_api_key_protects_data_plane_and_admin(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(worker_urls=[worker.url], api_key="data-key")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as client:
            assert_envelope(await client.post(CHAT, json=chat()), 401, "unauthorized")
            bad = {"authorization": "Bearer nope"}
            assert_envelope(await client.post(CHAT, json=chat(), headers=bad), 401, "unauthorized")
            assert_envelope(await client.post(CHAT, json=chat(), headers={"authorization": "data-key"}), 401)
            good = {"authorization": "Bearer data-key"}
            assert (await client.post(CHAT, json=chat(), headers=good)).status_code == 200
            # no admin key configured: the data-plane key is the admin key
            assert_envelope(await client.get("/workers"), 401, "unauthorized")
            assert_envelope(await client.get("/workers", headers=bad), 401, "unauthorized")
            assert (await client.get("/workers", headers=good)).status_code == 200
            # public endpoints stay open
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/readiness")).status_code == 200
        assert len(worker.arrivals) == 1  # unauthorized requests never reached the worker
    finally:
        await stop_workers([worker])


async def test_admin_api_key_is_separate(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(worker_urls=[worker.url], api_key="data-key", admin_api_key="admin-key")
        data = {"authorization": "Bearer data-key"}
        admin = {"authorization": "Bearer admin-key"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as client:
            assert_envelope(await client.get("/workers", headers=data), 401, "unauthorized")
            assert (await client.get("/workers", headers=admin)).status_code == 200
            r = await client.post("/workers", json={"url": "http://127.0.0.1:1"}, headers=data)
            assert_envelope(r, 401, "unauthorized")
            assert len(gw.registry) == 1  # the rejected admin call changed nothing
            assert (await client.post(CHAT, json=chat(), headers=data)).status_code == 200
            assert_envelope(await client.post(CHAT, json=chat(), headers=admin), 401, "unauthorized")
    finally:
        await stop_workers([worker])
