"""`herder bench`: load-test any OpenAI-compatible endpoint (herder, SMG, a single engine).

Examples:
  herder bench --url http://127.0.0.1:30000 --workload shared-prefix --concurrency 32 --num-requests 500
  herder bench --workload multi-turn --turns 6 --rps 20 --duration 60 --json run.json --plot run.png
  herder bench --report run.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Iterator
from dataclasses import asdict
from typing import Any

import orjson

from herder.loadgen.client import HttpClient, HttpError
from herder.loadgen.report import Summary, from_json, render, summarize, to_json
from herder.loadgen.runner import RunConfig, RunResult, run
from herder.loadgen.workloads import ENDPOINTS, WORKLOADS, WorkloadConfig, make_workload

__all__ = ["build_parser", "main"]

DEFAULT_URL = "http://127.0.0.1:30000"
# Warm-up draws from the same workload kind with this seed offset, so it never replays measured prompts.
_WARMUP_SEED_OFFSET = 1_000_003


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herder bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t = p.add_argument_group("target")
    t.add_argument("--url", default=DEFAULT_URL, help="base URL of the endpoint (default: %(default)s)")
    t.add_argument("--model", default=None, help="model name (default: the first of GET /v1/models)")
    t.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="chat", help="API (default: chat)")
    t.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY'")
    t.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, s (default: 600)")
    t.add_argument(
        "--no-worker-stats",
        dest="worker_stats",
        action="store_false",
        help="do not ask the target for GET /workers or /get_loads after the run",
    )

    w = p.add_argument_group("workload")
    w.add_argument("--workload", choices=WORKLOADS, default="random", help="request shape (default: random)")
    w.add_argument("--max-tokens", type=int, default=128, help="max_tokens per request (default: 128)")
    w.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True, help="SSE (default: on)")
    w.add_argument("--seed", type=int, default=0, help="seed for prompts and arrivals (default: 0)")
    w.add_argument("--input-min", type=int, default=None, help="min words of each prompt's unique part")
    w.add_argument("--input-max", type=int, default=None, help="max words of each prompt's unique part")
    w.add_argument(
        "--groups", type=int, default=8, help="shared-prefix: number of system prompts (default: 8)"
    )
    w.add_argument("--prefix-words", type=int, default=1024, help="shared-prefix: system prompt words")
    w.add_argument("--turns", type=int, default=4, help="multi-turn: turns per conversation (default: 4)")
    w.add_argument(
        "--extra-body", default=None, help="JSON merged into every body, e.g. '{\"ignore_eos\":true}'"
    )

    r = p.add_argument_group("load")
    r.add_argument("--num-requests", "-n", type=int, default=None, help="requests to send (default: 200)")
    r.add_argument("--duration", "-d", type=float, default=None, help="stop sending after this many seconds")
    r.add_argument("--concurrency", "-c", type=int, default=8, help="closed loop: requests in flight")
    r.add_argument("--rps", type=float, default=None, help="open loop: Poisson arrivals per second")
    r.add_argument("--max-in-flight", type=int, default=None, help="open loop: cap on requests in flight")
    r.add_argument("--warmup", type=int, default=0, help="warm-up requests, not measured (default: 0)")

    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="FILE", default=None, help="write the summary and configuration as JSON")
    o.add_argument("--records", metavar="FILE", default=None, help="write per-request records as JSON lines")
    o.add_argument("--report", metavar="FILE", default=None, help="re-render a saved --json summary and exit")
    o.add_argument("--plot", metavar="PNG", default=None, help="latency plots (needs matplotlib)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    o.add_argument("--no-uvloop", action="store_true", help="use the default asyncio event loop")
    return p


def _configs(args: argparse.Namespace) -> tuple[WorkloadConfig, RunConfig]:
    extra: dict[str, Any] = {}
    if args.extra_body:
        try:
            extra = orjson.loads(args.extra_body)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"--extra-body is not JSON: {e}") from e
        if not isinstance(extra, dict):
            raise ValueError("--extra-body must be a JSON object")
    wcfg = WorkloadConfig(
        kind=args.workload,
        endpoint=args.endpoint,
        model=args.model or "",
        max_tokens=args.max_tokens,
        stream=args.stream,
        seed=args.seed,
        input_min=args.input_min,
        input_max=args.input_max,
        groups=args.groups,
        prefix_words=args.prefix_words,
        turns=args.turns,
        extra_body=extra,
    )
    rcfg = RunConfig(
        concurrency=args.concurrency,
        rps=args.rps,
        max_in_flight=args.max_in_flight,
        num_requests=args.num_requests,
        duration=args.duration,
        warmup=args.warmup,
        seed=args.seed,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    wcfg.validate()
    rcfg.validate()
    if args.timeout <= 0:
        raise ValueError("--timeout must be > 0")
    return wcfg, rcfg


async def discover_model(client: HttpClient) -> str:
    """The first model id of GET /v1/models."""
    doc = await client.get_json("/v1/models")
    data = doc.get("data") if isinstance(doc, dict) else None
    if not data or not isinstance(data[0], dict) or not isinstance(data[0].get("id"), str):
        raise HttpError("GET /v1/models returned no models")
    return str(data[0]["id"])


async def fetch_target_workers(client: HttpClient) -> list[dict[str, Any]]:
    """Best effort: the target's worker list from GET /workers (herder, SMG) or GET /get_loads."""
    keep = ("url", "model_id", "is_healthy", "status", "load", "worker_type")
    with contextlib.suppress(HttpError, OSError, ValueError, TypeError, AttributeError):
        doc = await client.get_json("/workers", timeout=3.0)
        items = doc.get("workers") if isinstance(doc, dict) else None
        if isinstance(items, list):
            return [{k: w[k] for k in keep if k in w} for w in items if isinstance(w, dict) and "url" in w]
    with contextlib.suppress(HttpError, OSError, ValueError, TypeError, AttributeError):
        doc = await client.get_json("/get_loads", timeout=3.0)
        items = doc.get("workers") if isinstance(doc, dict) else None
        if isinstance(items, list):
            return [
                {"url": w["worker"], "load": w.get("load")}
                for w in items
                if isinstance(w, dict) and isinstance(w.get("worker"), str)
            ]
    return []


async def bench(args: argparse.Namespace, wcfg: WorkloadConfig, rcfg: RunConfig) -> tuple[RunResult, Summary]:
    """Discover the model if needed, warm up, run, and summarize."""
    client = HttpClient(args.url, api_key=args.api_key, pool_size=rcfg.in_flight_cap(), timeout=args.timeout)
    try:
        if not wcfg.model:
            wcfg.model = await discover_model(client)
        workload = make_workload(wcfg)
        warm_cfg = WorkloadConfig(**{**asdict(wcfg), "seed": wcfg.seed + _WARMUP_SEED_OFFSET})
        stop = asyncio.Event()
        with _sigint_stops(stop):
            result = await run(client, workload, rcfg, warmup_workload=make_workload(warm_cfg), stop=stop)
        workers = await fetch_target_workers(client) if args.worker_stats else []
    finally:
        await client.close()
    config = {"url": args.url, "timeout": args.timeout, "workload": asdict(wcfg), "run": asdict(rcfg)}
    config["run"].pop("progress", None)
    config["interrupted"] = stop.is_set()
    return result, summarize(result, config, workers)


@contextlib.contextmanager
def _sigint_stops(stop: asyncio.Event) -> Iterator[None]:
    """First Ctrl-C: stop sending and report what finished; a second one aborts (the default behaviour)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_sigint() -> None:
        if stop.is_set():
            if task is not None:
                task.cancel()
            return
        stop.set()
        print(
            "\nherder bench: stopping, waiting for requests in flight (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):
        yield  # not the main thread, or no signal support: Ctrl-C keeps its default meaning
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _run_async(coro: Coroutine[Any, Any, Any], use_uvloop: bool) -> Any:
    factory = None
    if use_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _write_records(path: str, result: RunResult) -> None:
    with open(path, "wb") as f:
        for rec in result.records:
            f.write(orjson.dumps(asdict(rec)) + b"\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `herder bench`; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.report:
        try:
            with open(args.report, "rb") as f:
                summary = from_json(f.read())
        except (OSError, ValueError, TypeError) as e:
            print(f"herder bench: cannot read {args.report}: {e}", file=sys.stderr)
            return 2
        sys.stdout.write(render(summary))
        if args.plot:
            print(
                "herder bench: --plot needs a live run (the summary has no per-request data)", file=sys.stderr
            )
        return 0
    try:
        wcfg, rcfg = _configs(args)
    except ValueError as e:
        print(f"herder bench: {e}", file=sys.stderr)
        return 2
    if args.plot:
        from herder.loadgen.plot import INSTALL_HINT, available

        if not available():
            print(f"herder bench: {INSTALL_HINT}", file=sys.stderr)
            return 2
    try:
        result, summary = _run_async(bench(args, wcfg, rcfg), not args.no_uvloop)
    except HttpError as e:
        print(f"herder bench: {e} (is {args.url} up? pass --model to skip discovery)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"herder bench: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("herder bench: interrupted", file=sys.stderr)
        return 130
    sys.stdout.write(render(summary))
    try:
        if args.json:
            with open(args.json, "wb") as f:
                f.write(to_json(summary))
        if args.records:
            _write_records(args.records, result)
    except OSError as e:
        print(f"herder bench: cannot write output: {e}", file=sys.stderr)
        return 2
    if args.plot:
        from herder.loadgen.plot import PlotUnavailable, plot_latencies

        try:
            plot_latencies(result.records, args.plot, title=f"herder bench: {wcfg.kind} @ {args.url}")
        except PlotUnavailable as e:
            print(f"herder bench: {e}", file=sys.stderr)
            return 2
    return 0 if summary.completed else 1
