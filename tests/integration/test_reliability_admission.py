"""Admission through the real gateway: exact 200/408/429 counts, a stream holds its token to the last byte, a
client that leaves the queue frees its place."""

from __future__ import annotations

import asyncio
import socket

import httpx
import orjson

from herder.server.admission import TokenBucketAdmission
from tests.conftest import GatewayFactory
from tests.integration.reliability_support import CHAT, assert_envelope, chat, start_workers, stop_workers
from tests.waiting import wait_for


def _rate_limit_counts(gw: object) -> dict[str, float]:
    family = gw.metrics.http_rate_limit  # type: ignore[attr-defined]
    return {labels[0]: child.value for labels, child in family.series().items() if child.value}


async def test_capacity_queue_timeout_counts(make_gateway: GatewayFactory) -> None:
    workers = await start_workers(1)
    try:
        gw = await make_gateway(
            worker_urls=[workers[0].url],
            max_concurrent_requests=2,
            rate_limit_tokens_per_second=0.0,
            queue_size=2,
            queue_timeout_secs=1.0,
        )
        slow = {"x-sim-ttft-ms": "2500"}  # holders keep their token well past the queue timeout
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gw.port}", timeout=30, limits=httpx.Limits(max_connections=20)
        ) as client:
            results = await asyncio.gather(
                *(client.post(CHAT, json=chat(f"q{i}"), headers=slow) for i in range(10))
            )
        by_status: dict[int, int] = {}
        for r in results:
            by_status[r.status_code] = by_status.get(r.status_code, 0) + 1
            if r.status_code == 429:
                assert_envelope(r, 429, "rate_limit_exceeded")
            elif r.status_code == 408:
                assert_envelope(r, 408, "queue_timeout")
        print(f"statuses: {by_status}; admission metric: {_rate_limit_counts(gw)}")
        assert by_status == {200: 2, 408: 2, 429: 6}
        assert len(workers[0].arrivals) == 2  # rejected and timed-out requests never reached a worker
        assert _rate_limit_counts(gw) == {"allowed": 2, "queued": 2, "timeout": 2, "rejected": 6}
    finally:
        await stop_workers(workers)


async def test_stream_holds_its_token_until_the_last_byte(make_gateway: GatewayFactory) -> None:
    (worker,) = await start_workers(1)
    try:
        gw = await make_gateway(
            worker_urls=[worker.url],
            max_concurrent_requests=1,
            rate_limit_tokens_per_second=0.0,
            queue_size=4,
            queue_timeout_secs=30.0,
        )
        admission = gw.admission
        assert isinstance(admission, TokenBucketAdmission)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            body = chat("long", stream=True, max_tokens=10)
            async with client.stream("POST", CHAT, json=body, headers={"x-sim-itl-ms": "100"}) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                first = await anext(lines)
                assert first.startswith("data: ")
                second = asyncio.create_task(client.post(CHAT, json=chat("next")))
                await wait_for(lambda: admission.waiting == 1)
                assert len(worker.arrivals) == 1  # the second request waits while the stream is open
                rest = [line async for line in lines]
                assert rest[-1] == "" or rest[-1].startswith("data: ")
                assert [x for x in rest if x][-1] == "data: [DONE]"
            r = await asyncio.wait_for(second, 10)
            assert r.status_code == 200
        assert len(worker.arrivals) == 2
        assert worker.arrivals[1].completed_before == 1  # admitted only after the stream had ended
        assert _rate_limit_counts(gw) == {"allowed": 1, "queued": 1, "dequeued": 1}
    finally:
        await stop_workers([worker])


async def test_client_leaving_the_queue_frees_its_place(make_gateway: GatewayFactory) -> None:
    """A queued request whose client disconnects leaves the queue at once and never reaches a worker.

    Needs the gateway to pass the Reply to `admission.acquire(reply)` (docs/reliability-NOTES.md, item 1).
    """
    (worker,) = await start_workers(1)
    holder: asyncio.Task[httpx.Response] | None = None
    try:
        gw = await make_gateway(
            worker_urls=[worker.url],
            max_concurrent_requests=1,
            rate_limit_tokens_per_second=0.0,
            queue_size=1,
            queue_timeout_secs=30.0,
        )
        admission = gw.admission
        assert isinstance(admission, TokenBucketAdmission)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:
            holder = asyncio.create_task(
                client.post(CHAT, json=chat("hold"), headers={"x-sim-ttft-ms": "1500"})
            )
            await wait_for(lambda: len(worker.arrivals) == 1)
            body = orjson.dumps(chat("leaver"))
            raw = socket.create_connection(("127.0.0.1", gw.port))
            raw.sendall(
                b"POST %b HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d"
                b"\r\n\r\n%b" % (CHAT.encode(), len(body), body)
            )
            await wait_for(lambda: admission.waiting == 1)
            raw.close()  # the client gives up while queued
            await wait_for(lambda: admission.waiting == 0, timeout=1.0)
            assert not holder.done()  # its place was freed before the holder finished
            # the freed place is usable: a new request queues (not 429) and is served after the holder
            r2 = await client.post(CHAT, json=chat("after"))
            assert r2.status_code == 200
            assert (await holder).status_code == 200
        assert len(worker.arrivals) == 2  # the leaver never reached the worker
        assert _rate_limit_counts(gw).get("cancelled") == 1
    finally:
        if holder is not None and not holder.done():
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
        await stop_workers([worker])
