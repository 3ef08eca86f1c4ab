"""`herder demo`: a simulated fleet + the gateway in one command, a short mixed workload, and a summary.

The fleet is herder's simulated engine (prefix cache, latency model), the gateway is the real one on
127.0.0.1:30000, and the workload is `herder bench`'s shared-prefix chat, non-streamed then streamed. The summary
shows where requests went, how much of the prompts the workers found in their prefix caches (reported by the
workers as `usage.prompt_tokens_details.cached_tokens`), and TTFT percentiles. Then it keeps serving (point the
openai SDK at http://127.0.0.1:30000/v1) until Ctrl-C, or exits with `--exit`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from herder.config import GatewayConfig
from herder.loadgen.cli import _configs, bench
from herder.loadgen.cli import build_parser as bench_parser
from herder.loadgen.report import Summary
from herder.server.app import Gateway
from herder.sim.fleet import SimFleet


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="herder demo", description="Simulated fleet + gateway + a short workload.")
    p.add_argument("--workers", type=int, default=4, help="simulated workers (default 4)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000, help="gateway port (default 30000)")
    p.add_argument("--policy", default="cache_aware", choices=("cache_aware", "round_robin", "random",
                                                                "power_of_two"))
    p.add_argument("--requests", type=int, default=240, help="requests per phase (non-streamed, streamed)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--groups", type=int, default=8, help="shared system prompts in the workload")
    p.add_argument("--exit", action="store_true", help="stop after printing the summary")
    return p


def _percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:5.1f} %" if whole else "   n/a"


def _ms(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else "     n/a"


def render_summary(gateway: Gateway, fleet: SimFleet, phases: list[tuple[str, Summary]]) -> str:
    lines = ["", "herder demo summary", "=" * 78, "",
             f"{'worker':<28}{'requests':>10}{'share':>10}{'prompt tok':>12}{'cached tok':>12}{'hit rate':>10}"]
    by_url = {w.url: w for w in gateway.registry.workers.values()}
    total = sum(w.processed for w in by_url.values())
    for url, engine in zip(fleet.urls, fleet.engines, strict=True):
        worker = by_url.get(url)
        n = worker.processed if worker is not None else 0
        st = engine.stats
        lines.append(f"{url:<28}{n:>10}{_percent(n, total):>10}{st.prompt_tokens:>12}{st.cached_tokens:>12}"
                     f"{_percent(st.cached_tokens, st.prompt_tokens):>10}")
    lines += ["", f"{'phase':<14}{'ok':>6}{'failed':>8}{'req/s':>9}{'cache hit':>11}"
                  f"{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'E2E p50 ms':>12}"]
    for name, s in phases:
        ttft = s.ttft_ms
        e2e = s.e2e_ms
        hit = f"{100 * s.cache_hit_rate:8.1f} %" if s.cache_hit_rate is not None else "      n/a"
        lines.append(f"{name:<14}{s.completed:>6}{s.failed:>8}{s.request_throughput:>9.1f}{hit:>11}"
                     f"{_ms(ttft.p50 if ttft else None):>13}{_ms(ttft.p99 if ttft else None):>13}"
                     f"{_ms(e2e.p50 if e2e else None):>12}")
    lines += ["", f"policy: {gateway.config.policy}; gateway: http://{gateway.config.host}:{gateway.port}/v1", ""]
    return "\n".join(lines)


async def run_demo(opts: argparse.Namespace) -> int:
    # A latency model with visible prefill cost, so prefix-cache hits show up in TTFT.
    async with SimFleet(n=opts.workers, ttft_ms=8.0, prefill_tps=40000.0, itl_ms=2.0,
                        itl_per_running_ms=0.1) as fleet:
        cfg = GatewayConfig(host=opts.host, port=opts.port, worker_urls=fleet.urls, policy=opts.policy,
                            prometheus_port=0, log_level="warning")
        gateway = Gateway(cfg)
        try:
            await gateway.start()
        except OSError as exc:
            print(f"herder demo: error: cannot listen on {opts.host}:{opts.port}: {exc.strerror}", file=sys.stderr)
            return 1
        url = f"http://{opts.host}:{gateway.port}"
        print(f"herder demo: {opts.workers} simulated workers behind {url} (policy {opts.policy})", file=sys.stderr)
        phases: list[tuple[str, Summary]] = []
        try:
            for name, stream in (("non-streamed", False), ("streamed", True)):
                argv = ["--url", url, "--workload", "shared-prefix", "--num-requests", str(opts.requests),
                        "--concurrency", str(opts.concurrency), "--groups", str(opts.groups),
                        "--max-tokens", "32", "--seed", "7" if stream else "3",
                        "--stream" if stream else "--no-stream", "--no-worker-stats"]
                args = bench_parser().parse_args(argv)
                wcfg, rcfg = _configs(args)
                rcfg.progress = sys.stderr.isatty()
                print(f"phase: {name} shared-prefix chat, {opts.requests} requests", file=sys.stderr)
                _, summary = await bench(args, wcfg, rcfg)
                phases.append((name, summary))
            print(render_summary(gateway, fleet, phases))
            sys.stdout.flush()
            if not opts.exit:
                print(f"serving on {url} until Ctrl-C", file=sys.stderr)
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
        finally:
            await gateway.stop(5.0)
        failed = sum(s.failed for _, s in phases)
        return 0 if failed == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    opts = _parser().parse_args(list(argv) if argv is not None else None)
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        return int(uvloop.run(run_demo(opts)))
    return 130
