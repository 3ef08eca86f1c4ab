"""PD disaggregation over HTTP, end to end: the openai SDK and httpx against a PD gateway in front of simulated
prefill and decode workers that check every bootstrap room / KV handoff for real (sim/pd.py).

Outputs are compared with a regular simulated worker (the oracle): a correct PD pair answers exactly what one
regular worker answers, including the merged `input_token_logprobs`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from herder.server.app import Gateway
from herder.sim.http_worker import SimHttpWorker
from herder.sim.pd import SimPdFleet
from tests.conftest import GatewayFactory
from tests.waiting import wait_for

MODEL = "sim-model"


@pytest.fixture
async def oracle() -> AsyncIterator[httpx.AsyncClient]:
    """A regular simulated worker: what the PD pair must reproduce."""
    worker = SimHttpWorker()
    await worker.start()
    async with httpx.AsyncClient(base_url=worker.url) as client:
        yield client
    await worker.stop()


async def _pd_gateway(make_gateway: GatewayFactory, fleet: SimPdFleet, **extra: Any) -> Gateway:
    extra.setdefault("policy", "round_robin")
    return await make_gateway(
        pd_disaggregation=True, prefill=fleet.prefill_args, decode=fleet.decode_args, **extra
    )


def _sdk(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key="none", max_retries=0)


async def _openai_round(gw: Gateway, oracle: httpx.AsyncClient) -> int:
    """Chat and completions, streamed and not, through the SDK; each answer equals the oracle's. Returns the
    number of requests sent."""
    client = _sdk(gw)
    sent = 0
    for i in range(4):
        messages = [{"role": "user", "content": f"question {i}: tell me about prefill and decode"}]
        want = (
            await oracle.post(
                "/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 6}
            )
        ).json()
        chat = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6)  # type: ignore[arg-type]
        assert chat.choices[0].message.content == want["choices"][0]["message"]["content"]
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=6,  # type: ignore[arg-type]
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == want["choices"][0]["message"]["content"]
        prompt = f"completion prompt number {i} " * 3
        want_c = (
            await oracle.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 5})
        ).json()
        comp = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=5)
        assert comp.choices[0].text == want_c["choices"][0]["text"]
        cstream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, stream=True)
        assert (
            "".join([c.choices[0].text async for c in cstream if c.choices]) == want_c["choices"][0]["text"]
        )
        sent += 4
    await client.close()
    return sent


async def _generate_round(gw: Gateway, oracle: httpx.AsyncClient) -> int:
    body = {"text": "the generate endpoint through a pair", "sampling_params": {"max_new_tokens": 4}}
    want = (await oracle.post("/generate", json=body)).json()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
        got = (await client.post("/generate", json=body)).json()
    assert got["text"] == want["text"] and got["output_ids"] == want["output_ids"]
    return 1


@pytest.mark.parametrize("flavor", ["sglang", "vllm"])
async def test_openai_sdk_and_generate_through_pd(
    make_gateway: GatewayFactory, oracle: httpx.AsyncClient, flavor: str
) -> None:
    async with SimPdFleet(2, 2, flavor=flavor, ttft_ms=2, prefill_tps=20000, itl_ms=0.5) as fleet:  # type: ignore[arg-type]
        gw = await _pd_gateway(make_gateway, fleet, pd_backend=flavor)
        sent = await _openai_round(gw, oracle) + await _generate_round(gw, oracle)
        assert fleet.failures() == 0
        # Every decode fetched its prefill's KV, once per request; both sides of the fleet took part.
        assert fleet.transfers() == sent
        assert sum(w.pd.served_rooms for w in fleet.prefills) == sent
        assert all(w.pd.transfers_ok > 0 for w in fleet.decodes)
        assert all(w.pd.prefilled_rooms > 0 for w in fleet.prefills)
        assert all(w.load == 0 for w in gw.registry.workers.values())
        if flavor == "vllm":
            # The vLLM prefill leg generated exactly one token per request.
            assert sum(int(w.engine.stats.completion_tokens) for w in fleet.prefills) == sent


async def test_batched_generate_and_n2_get_a_room_per_item(
    make_gateway: GatewayFactory, oracle: httpx.AsyncClient
) -> None:
    async with SimPdFleet(1, 1) as fleet:
        gw = await _pd_gateway(make_gateway, fleet)
        prefill, decode = fleet.prefills[0], fleet.decodes[0]
        body = {
            "text": ["first prompt here", "second prompt", "third one"],
            "sampling_params": {"max_new_tokens": 3, "n": 2},
            "return_logprob": True,
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            got = (await client.post("/generate", json=body)).json()
            chat = await client.post(
                "/v1/chat/completions",
                json={
                    "model": MODEL,
                    "n": 2,
                    "max_tokens": 3,
                    "messages": [{"role": "user", "content": "two please"}],
                },
            )
        want = (await oracle.post("/generate", json=body)).json()
        assert chat.status_code == 200 and len(chat.json()["choices"]) == 2
        rooms = list(prefill.rooms_seen)
        assert len(rooms) == 6 + 2 and len(set(rooms)) == 8  # a fresh room per item
        assert list(decode.rooms_seen) == rooms
        assert all(0 <= r < 2**63 for r in rooms)
        assert fleet.failures() == 0 and decode.pd.transfers_ok == 8
        # Logprobs: the prefill's share then the decode's, per item, equal the regular worker's.
        assert len(got) == len(want) == 6
        for g, w in zip(got, want, strict=True):
            assert g["text"] == w["text"]
            assert g["meta_info"]["input_token_logprobs"] == w["meta_info"]["input_token_logprobs"]
            assert g["meta_info"]["output_token_logprobs"] == w["meta_info"]["output_token_logprobs"]


async def test_streamed_logprobs_are_merged_in_every_chunk(
    make_gateway: GatewayFactory, oracle: httpx.AsyncClient
) -> None:
    async with SimPdFleet(1, 1) as fleet:
        gw = await _pd_gateway(make_gateway, fleet)
        body = {
            "text": "stream the merged logprobs please",
            "sampling_params": {"max_new_tokens": 5},
            "return_logprob": True,
            "stream": True,
        }
        want = (await oracle.post("/generate", json={**body, "stream": False})).json()
        expected = want["meta_info"]["input_token_logprobs"]
        events = []
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client,
            client.stream("POST", "/generate", json=body) as resp,
        ):
            async for line in resp.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(httpx.Response(200, content=line[6:]).json())
        assert len(events) == 5
        assert all(e["meta_info"]["input_token_logprobs"] == expected for e in events)
        assert events[-1]["text"] == want["text"]


async def test_a_failing_decode_is_retried_on_a_new_pair_with_a_new_room(
    make_gateway: GatewayFactory,
) -> None:
    async with SimPdFleet(1, 2) as fleet:
        gw = await _pd_gateway(make_gateway, fleet)
        fleet.decodes[0].engine.update(error_rate=1.0, error_status=503)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for i in range(4):
                r = await client.post(
                    "/v1/completions", json={"model": MODEL, "prompt": f"retry {i}", "max_tokens": 2}
                )
                assert r.status_code == 200
        bad, good = fleet.decodes
        assert bad.engine.stats.errors_injected >= 1
        assert good.pd.transfers_ok == 4
        # Each failed attempt used its own room; the retry minted a new one.
        rooms = list(fleet.prefills[0].rooms_seen)
        assert len(rooms) == 4 + bad.engine.stats.errors_injected == len(set(rooms))
        assert all(w.load == 0 for w in gw.registry.workers.values())


async def test_killing_a_prefill_mid_load_gives_no_client_error(make_gateway: GatewayFactory) -> None:
    async with SimPdFleet(2, 2, ttft_ms=30, itl_ms=2) as fleet:
        gw = await _pd_gateway(make_gateway, fleet, retry_initial_backoff_ms=5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client:

            async def one(i: int) -> int:
                r = await client.post(
                    "/v1/chat/completions",
                    json={
                        "model": MODEL,
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": f"load {i}"}],
                    },
                )
                return r.status_code

            tasks = [asyncio.ensure_future(one(i)) for i in range(40)]
            await wait_for(lambda: fleet.prefills[0].engine.stats.running > 0)
            await fleet.kill_prefill(0)
            codes = await asyncio.gather(*tasks)
            more = await asyncio.gather(*(one(100 + i) for i in range(10)))
        assert codes.count(200) == 40 and more.count(200) == 10
        assert fleet.prefills[1].pd.prefilled_rooms >= 1
        assert all(w.load == 0 for w in gw.registry.workers.values())


async def test_client_disconnect_closes_both_legs(make_gateway: GatewayFactory) -> None:
    async with SimPdFleet(1, 1, itl_ms=20) as fleet:
        gw = await _pd_gateway(make_gateway, fleet)
        decode = fleet.decodes[0]
        body = {"model": MODEL, "prompt": "go away early", "max_tokens": 200, "stream": True}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client,
            client.stream("POST", "/v1/completions", json=body) as resp,
        ):
            async for _ in resp.aiter_bytes():
                break
        await wait_for(lambda: decode.engine.stats.aborted == 1)
        await wait_for(lambda: all(w.load == 0 for w in gw.registry.workers.values()))
        assert decode.engine.stats.running == 0


async def test_readiness_needs_prefill_and_decode(make_gateway: GatewayFactory) -> None:
    async with SimPdFleet(1, 1) as fleet:
        gw = await make_gateway(pd_disaggregation=True, prefill=fleet.prefill_args)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            assert (await client.get("/readiness")).status_code == 503
            r = await client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1})
            assert r.status_code == 503
            assert r.headers["x-smg-error-code"] == "server_selection_failed"
            added = await client.post("/workers", json={"url": fleet.decodes[0].url, "worker_type": "decode"})
            assert added.status_code == 202
            await wait_for(lambda: gw.is_ready())
            assert (await client.get("/readiness")).status_code == 200
            r = await client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1})
            assert r.status_code == 200
        assert fleet.failures() == 0


async def test_pd_metrics_are_recorded(make_gateway: GatewayFactory) -> None:
    async with SimPdFleet(1, 1) as fleet:
        gw = await _pd_gateway(make_gateway, fleet)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for stream in (False, True):
                r = await client.post(
                    "/v1/completions",
                    json={"model": MODEL, "prompt": "metrics", "max_tokens": 2, "stream": stream},
                )
                assert r.status_code == 200
        await wait_for(lambda: all(w.load == 0 for w in gw.registry.workers.values()))
        ttft = gw.metrics.pd_ttft.series()[("pd", MODEL, "sglang")]
        prefill = gw.metrics.pd_prefill_duration.series()[("pd", MODEL, "sglang")]
        assert ttft.count == 2 and prefill.count == 2
        assert gw.metrics.pd_bootstrap_failures.child.value == 0


async def test_wrong_bootstrap_port_fails_loudly(make_gateway: GatewayFactory) -> None:
    """A prefill registered with a port that is not its bootstrap port: the decode cannot find the room, the
    sim counts it, and the client gets an error, never a silently wrong answer."""
    async with SimPdFleet(1, 1) as fleet:
        wrong = [[fleet.prefills[0].url, str(fleet.decodes[0].port)]]
        gw = await make_gateway(
            pd_disaggregation=True, prefill=wrong, decode=fleet.decode_args, retry_max_retries=1
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            r = await client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1})
        assert r.status_code >= 500
        assert fleet.decodes[0].pd.failures == 1
