"""PD vs regular routing on the simulated fleet, long prompts: TTFT, ITL, E2E and throughput.

    python bench/pd_bench.py [--requests 200] [--concurrency 16] [--input-words 2000] [--max-tokens 32]

Same engine model everywhere (herder.sim: `--prefill-tps` for uncached prompt tokens, `--itl-ms` plus
`--itl-per-running-ms` per request running on that worker, a prefix cache). Fleets of four workers:
regular (4 x prefill+decode, round_robin) vs PD SGLang-style 2 prefill + 2 decode and 1 + 3 (round_robin each
side), then PD vLLM-style 2 + 2. Everything runs in this process (gateway, workers, load generator: herder
bench's async API), so on a small machine the absolute numbers carry the load generator's and the workers' CPU
too; compare the rows.

What the simulator models and what it does not: a PD decode's first token waits for its prefill (prompt
cost on the prefill worker) and a KV transfer (`--transfer-ms`); decode workers carry only decoding requests,
so their per-running ITL penalty counts decodes only. It does NOT model the main real-world PD win, a long
prefill stalling every decode step of its batch on a regular worker; so expect PD here to cost a little TTFT
(an extra hop and the transfer) and to show ITL effects only through the running-request counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
from dataclasses import dataclass
from typing import Any

from herder.config import GatewayConfig
from herder.loadgen.client import HttpClient
from herder.loadgen.report import Summary, summarize
from herder.loadgen.runner import RunConfig, run
from herder.loadgen.workloads import WorkloadConfig, make_workload
from herder.server.app import Gateway
from herder.sim.engine import SimConfig
from herder.sim.fleet import SimFleet
from herder.sim.pd import SimPdFleet


@dataclass(slots=True)
class Case:
    name: str
    prefill: int = 0
    decode: int = 0
    regular: int = 0
    flavor: str = "sglang"


CASES = (
    Case("regular 4", regular=4),
    Case("PD sglang 2P+2D", prefill=2, decode=2),
    Case("PD sglang 1P+3D", prefill=1, decode=3),
    Case("PD vllm 2P+2D", prefill=2, decode=2, flavor="vllm"),
)


async def _gateway(**cfg: Any) -> Gateway:
    gw = Gateway(
        GatewayConfig(
            host="127.0.0.1",
            port=0,
            prometheus_port=0,
            policy="round_robin",
            disable_health_check=True,
            worker_startup_check_interval=0.05,
            **cfg,
        )
    )
    await gw.start()
    return gw


async def run_case(case: Case, sim: SimConfig, args: argparse.Namespace) -> tuple[Summary, int]:
    """One fleet + gateway + load run; returns the summary and the fleet's PD failure count."""
    async with contextlib.AsyncExitStack() as stack:
        failures = 0
        if case.regular:
            fleet = await stack.enter_async_context(SimFleet(case.regular, config=sim))
            gw = await _gateway(worker_urls=fleet.urls)
        else:
            pd = await stack.enter_async_context(
                SimPdFleet(
                    case.prefill,
                    case.decode,
                    flavor=case.flavor,
                    config=sim,  # type: ignore[arg-type]
                    transfer_ms=args.transfer_ms,
                )
            )
            gw = await _gateway(
                pd_disaggregation=True, prefill=pd.prefill_args, decode=pd.decode_args, pd_backend=case.flavor
            )
        stack.push_async_callback(gw.stop)
        wl = WorkloadConfig(
            kind="random",
            endpoint="chat",
            model=sim.model,
            max_tokens=args.max_tokens,
            stream=True,
            seed=args.seed,
            input_min=args.input_words,
            input_max=args.input_words,
            extra_body={"ignore_eos": True},
        )
        client = HttpClient(f"http://127.0.0.1:{gw.port}", pool_size=args.concurrency * 2)
        stack.push_async_callback(client.close)
        result = await run(
            client,
            make_workload(wl),
            RunConfig(concurrency=args.concurrency, num_requests=args.requests, seed=args.seed),
            progress_out=io.StringIO(),
        )
        if not case.regular:
            failures = pd.failures()
        return summarize(result, {"case": case.name}), failures


def _row(name: str, s: Summary, failures: int) -> str:
    def p(x: Any, attr: str) -> str:
        return f"{getattr(x, attr):8.1f}" if x is not None else f"{'-':>8}"

    return (
        f"| {name:<18} | {s.completed:>4}/{s.requests:<4} | {s.request_throughput:7.2f} | "
        f"{s.output_token_throughput:8.0f} | {p(s.ttft_ms, 'p50')} | {p(s.ttft_ms, 'p90')} | "
        f"{p(s.itl_ms, 'p50')} | {p(s.e2e_ms, 'p50')} | {failures:>5} |"
    )


async def main_async(args: argparse.Namespace) -> None:
    sim = SimConfig(
        ttft_ms=args.ttft_ms,
        prefill_tps=args.prefill_tps,
        itl_ms=args.itl_ms,
        itl_per_running_ms=args.itl_per_running_ms,
    )
    print(
        f"chat, streamed, {args.input_words}-word prompts, {args.max_tokens} output tokens, "
        f"concurrency {args.concurrency}, {args.requests} requests; sim: prefill {args.prefill_tps:g} tok/s, "
        f"ttft {args.ttft_ms:g} ms, itl {args.itl_ms:g} ms + {args.itl_per_running_ms:g} ms/running, "
        f"KV transfer {args.transfer_ms:g} ms"
    )
    print(
        "| case               | ok/sent   |   req/s |  out t/s | TTFT p50 | TTFT p90 |  ITL p50 |  E2E p50 | PD err|"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in CASES:
        summary, failures = await run_case(case, sim, args)
        print(_row(case.name, summary, failures), flush=True)
        if summary.error_samples:
            print(f"  errors of {case.name}: {summary.error_samples[:3]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--input-words", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prefill-tps", type=float, default=40000.0)
    ap.add_argument("--ttft-ms", type=float, default=5.0)
    ap.add_argument("--itl-ms", type=float, default=8.0)
    ap.add_argument("--itl-per-running-ms", type=float, default=0.5)
    ap.add_argument("--transfer-ms", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
