"""The simulated PD workers catch a wrong pairing (sent directly, without the gateway), and `herder sim --pd-*`."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from herder.sim import cli
from herder.sim.pd import SimPdFleet
from tests.waiting import wait_for

BODY = {"model": "sim-model", "prompt": "the prompt", "max_tokens": 2}


async def _pair(
    client: httpx.AsyncClient,
    prefill: str,
    decode: str,
    p_body: dict,
    d_body: dict,
) -> tuple[httpx.Response, httpx.Response]:
    p, d = await asyncio.gather(
        client.post(prefill + "/v1/completions", json=p_body),
        client.post(decode + "/v1/completions", json=d_body),
    )
    return p, d


async def test_sglang_sim_checks_room_host_port_and_prompt() -> None:
    async with SimPdFleet(1, 1, ttft_ms=5) as fleet, httpx.AsyncClient(timeout=10) as client:
        prefill, decode = fleet.prefills[0], fleet.decodes[0]
        decode.bootstrap_wait_s = prefill.bootstrap_wait_s = 0.3
        boot = {"bootstrap_host": "127.0.0.1", "bootstrap_port": prefill.bootstrap_port}
        ok = {**BODY, **boot, "bootstrap_room": 11}
        p, d = await _pair(client, prefill.url, decode.url, ok, ok)
        assert p.status_code == d.status_code == 200 and decode.pd.transfers_ok == 1
        # The decode arrives first and waits for the room; the prefill then announces and fills it.
        d_task = asyncio.ensure_future(
            client.post(decode.url + "/v1/completions", json={**ok, "bootstrap_room": 12})
        )
        # it is waiting once the prefill's bootstrap server holds its (not yet announced) room
        await wait_for(lambda: 12 in prefill._rooms, timeout=5)
        await client.post(prefill.url + "/v1/completions", json={**ok, "bootstrap_room": 12})
        assert (await d_task).status_code == 200 and decode.pd.transfers_ok == 2
        cases = [
            ({**ok, "bootstrap_room": 13}, {**ok, "bootstrap_room": 14}, "unknown_room"),
            (
                {**ok, "bootstrap_room": 15},
                {**ok, "bootstrap_room": 15, "prompt": "another"},
                "prompt_mismatch",
            ),
            (ok, {**ok, "bootstrap_port": decode.port}, "unknown_room"),
            (ok, {**ok, "bootstrap_host": "127.0.0.2", "bootstrap_port": 1}, "unreachable_bootstrap"),
            (ok, {**BODY}, "missing_params"),
            (ok, {**ok, "bootstrap_port": None}, "bad_params"),
        ]
        for p_body, d_body, counter in cases:
            before = getattr(decode.pd, counter)
            _, d = await _pair(client, prefill.url, decode.url, p_body, d_body)
            assert d.status_code == 500, counter
            assert d.headers["x-smg-error-code"] == "pd_bootstrap_failed"
            assert getattr(decode.pd, counter) == before + 1, counter
        stats = (await client.get(decode.url + "/sim/stats")).json()["pd"]
        assert stats["failures"] == decode.pd.failures == len(cases)
        assert prefill.pd.failures == 0


async def test_vllm_sim_checks_the_minted_transfer() -> None:
    async with SimPdFleet(1, 1, flavor="vllm") as fleet, httpx.AsyncClient(timeout=10) as client:
        prefill, decode = fleet.prefills[0], fleet.decodes[0]
        p = await client.post(
            prefill.url + "/v1/completions",
            json={**BODY, "max_tokens": 1, "kv_transfer_params": {"do_remote_decode": True}},
        )
        params = p.json()["kv_transfer_params"]
        assert params["do_remote_prefill"] is True and params["remote_port"] == prefill.bootstrap_port
        d = await client.post(decode.url + "/v1/completions", json={**BODY, "kv_transfer_params": params})
        assert d.status_code == 200 and decode.pd.transfers_ok == 1
        forged = {**params, "nonce": "0" * 32}
        d = await client.post(decode.url + "/v1/completions", json={**BODY, "kv_transfer_params": forged})
        assert d.status_code == 500 and decode.pd.nonce_mismatch == 1
        d = await client.post(
            decode.url + "/v1/completions", json={**BODY, "prompt": "other", "kv_transfer_params": params}
        )
        assert d.status_code == 500 and decode.pd.prompt_mismatch == 1
        d = await client.post(decode.url + "/v1/completions", json=BODY)
        assert d.status_code == 500 and decode.pd.missing_params == 1
        no_params = await client.post(prefill.url + "/v1/completions", json=BODY)
        assert no_params.status_code == 400 and prefill.pd.missing_params == 1


async def test_herder_sim_pd_flags(capsys: object) -> None:
    parser = cli.build_parser()
    ns = parser.parse_args(["--pd-prefill", "1", "--pd-decode", "2", "--base-port", "0"])
    cli._validate(parser, ns)
    assert ns.http_count == 0
    stop = asyncio.Event()
    task = asyncio.ensure_future(cli.serve(ns, stop))
    try:
        out = ""

        def printed() -> bool:
            nonlocal out
            out = capsys.readouterr().out  # type: ignore[attr-defined]
            return bool(out)

        await wait_for(printed, timeout=4, message="herder sim printed no worker URLs")
        lines = out.split("\n")
        assert len(lines[0].split()) == 2 and lines[0].startswith("http://")  # prefill: URL BOOTSTRAP_PORT
        async with httpx.AsyncClient() as client:
            for line in lines[:3]:
                assert (await client.get(line.split()[0] + "/health")).status_code == 200
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
