"""The PD legs relayed through the proxy call's state machine (`HttpRouter.relay`): a prefill's client error is
the answer, a decode that stalls mid-stream ends in an in-band error event, and every lease comes back."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from herder.sim.pd import SimPdFleet
from tests.conftest import GatewayFactory, wait_for

MODEL = "sim-model"


@pytest.mark.parametrize("flavor", ["sglang", "vllm"])
async def test_a_prefill_client_error_is_relayed_as_the_answer(make_gateway: GatewayFactory, flavor: Any) -> None:
    async with SimPdFleet(1, 1, flavor=flavor) as fleet:
        gw = await make_gateway(pd_disaggregation=True, prefill=fleet.prefill_args, decode=fleet.decode_args,
                                pd_backend=flavor)
        prefill, decode = fleet.prefills[0], fleet.decodes[0]
        prefill.engine.update(error_rate=1.0, error_status=400)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for stream in (False, True):
                r = await client.post("/v1/completions",
                                      json={"model": MODEL, "prompt": "bad", "max_tokens": 3, "stream": stream})
                assert r.status_code == 400, r.text
                assert "simulated error (status 400)" in r.text  # the prefill's own body
        assert prefill.engine.stats.errors_injected == 2
        assert decode.pd.transfers_ok == 0
        await wait_for(lambda: all(w.load == 0 for w in gw.registry.workers.values()))
        # A client error is not the worker's fault: its breaker counts successes.
        w = gw.registry.find_by_url(prefill.url)
        assert w is not None and w.breaker.consecutive_failures == 0 and w.breaker.consecutive_successes >= 2


@pytest.mark.parametrize("flavor", ["sglang", "vllm"])
async def test_a_decode_stalling_mid_stream_ends_in_an_error_event(make_gateway: GatewayFactory, flavor: Any) -> None:
    async with SimPdFleet(1, 1, flavor=flavor, itl_ms=1) as fleet:
        gw = await make_gateway(pd_disaggregation=True, prefill=fleet.prefill_args, decode=fleet.decode_args,
                                pd_backend=flavor, stream_body_stall_timeout_secs=0.3)
        decode = fleet.decodes[0]
        decode.engine.update(stall_after_tokens=3)
        events: list[str] = []
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as client,
            client.stream("POST", "/v1/completions",
                          json={"model": MODEL, "prompt": "stall", "max_tokens": 20, "stream": True}) as r,
        ):
            assert r.status_code == 200
            events = [line.removeprefix("data: ") async for line in r.aiter_lines() if line]
        assert "[DONE]" not in events  # no fake success
        assert len([e for e in events if '"choices"' in e]) >= 3
        assert orjson.loads(events[-1])["error"]["code"] == "call_upstream_timeout"
        await wait_for(lambda: decode.engine.stats.aborted == 1)  # the gateway closed the stalled leg
        await wait_for(lambda: all(w.load == 0 for w in gw.registry.workers.values()))
