"""``herder sim``: run N simulated workers in one process (one port each) until SIGINT / SIGTERM.

    herder sim --http-count 4 --base-port 31000 [--host 127.0.0.1] [--model sim-model] [--ttft-ms 20]
               [--itl-ms 5] [--prefill-tps 8000] [--itl-per-running-ms 0.35] [--cache-blocks 8192]
               [--error-rate 0.1 --error-status 503 --retry-after 1] [--stall-after 3] [--die-after 100]
               [--output-tokens 16] [--grpc-count N --grpc-base-port P --tokenizer DIR]
               [--pd-prefill N --pd-decode M --pd-flavor sglang|vllm --pd-bootstrap-base-port P]

Prints one line per worker URL (``http://127.0.0.1:31000``) once every worker listens, then serves.
``--base-port 0`` picks free ports. ``--die-after N`` exits the process hard (``os._exit``) when a worker gets
request N+1, unless ``--die-mode close`` (that worker closes its listener and connections; the others live on).

gRPC: with ``--grpc-count N`` the workers come from ``herder.sim.grpc_worker.start_grpc_workers(count, base_port,
tokenizer_dir, runtime, host, **SimConfig fields)`` (each has ``url`` and ``async stop()``); when that module is
missing the command fails with exit code 2.

PD: ``--pd-prefill N --pd-decode M`` add simulated prefill and decode workers (``herder.sim.pd``; SGLang
bootstrap rooms, or vLLM kv_transfer_params with ``--pd-flavor vllm``). Their ports follow the HTTP workers';
prefill bootstrap servers listen from ``--pd-bootstrap-base-port`` (0 = free ports). A prefill worker's line is
``URL BOOTSTRAP_PORT``, ready to paste after the gateway's ``--prefill``. With PD workers and no explicit
``--http-count``, no regular HTTP worker is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from herder.sim.engine import SimConfig, SimEngine
from herder.sim.http_worker import SimHttpWorker


def build_parser(prog: str = "herder sim") -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog=prog, description="Run simulated LLM engine workers (HTTP, optional gRPC)."
    )
    a = p.add_argument
    a("--http-count", type=int, default=None, help="number of HTTP workers (default 1, 0 with --pd-*)")
    a(
        "--base-port",
        "--http-base-port",
        dest="base_port",
        type=int,
        default=9000,
        help="port of the first HTTP worker; the others follow (0 = free ports)",
    )
    a("--host", default="127.0.0.1")
    a("--model", default=d.model, help=f"served model name (default {d.model})")
    a("--ttft-ms", type=float, default=d.ttft_ms, help="base time to first token")
    a(
        "--prefill-tps",
        type=float,
        default=d.prefill_tps,
        help="prefill rate for uncached tokens (0 = instant)",
    )
    a("--itl-ms", type=float, default=d.itl_ms, help="base inter-token latency")
    a("--itl-per-running-ms", type=float, default=d.itl_per_running_ms, help="extra ITL per running request")
    a("--cache-blocks", type=int, default=d.cache_blocks, help="prefix cache capacity in blocks")
    a("--block-size", type=int, default=d.block_size, help="tokens per cache block")
    a("--output-tokens", type=int, default=d.output_tokens, help="tokens when a request names no max_tokens")
    a("--error-rate", type=float, default=d.error_rate, help="share of inference requests that fail")
    a("--error-status", type=int, default=d.error_status, help="status of injected errors")
    a("--retry-after", type=float, default=None, help="Retry-After seconds on injected errors")
    a(
        "--stall-after",
        type=int,
        default=None,
        help="stop streaming after this many tokens (connection stays)",
    )
    a("--die-after", type=int, default=None, help="die when request N+1 arrives")
    a(
        "--die-mode",
        choices=("exit", "close"),
        default="exit",
        help="exit: os._exit the process; close: close that worker's listener and connections",
    )
    a("--seed", type=int, default=d.seed, help="seed of the error-rate RNG (worker i uses seed + i)")
    a("--embedding-dim", type=int, default=d.embedding_dim)
    a("--max-running-requests", type=int, default=d.max_running_requests)
    a("--no-uvloop", action="store_true", help="use the default asyncio loop")
    a("--grpc-count", type=int, default=0, help="number of gRPC workers (needs herder.sim.grpc_worker)")
    a("--grpc-base-port", type=int, default=0, help="port of the first gRPC worker (0 = free ports)")
    a("--grpc-runtime", choices=("sglang", "vllm"), default="sglang", help="gRPC service the workers speak")
    a("--tokenizer", default=None, help="tokenizer folder for the gRPC workers")
    a("--pd-prefill", type=int, default=0, help="number of simulated PD prefill workers")
    a("--pd-decode", type=int, default=0, help="number of simulated PD decode workers")
    a(
        "--pd-flavor",
        choices=("sglang", "vllm"),
        default="sglang",
        help="PD handoff: bootstrap rooms or vLLM kv params",
    )
    a("--pd-bootstrap-base-port", type=int, default=0, help="bootstrap port of the first prefill (0 = free)")
    a("--pd-transfer-ms", type=float, default=0.0, help="decode-side KV transfer time")
    return p


def config_from_args(ns: argparse.Namespace) -> SimConfig:
    """The ``SimConfig`` the flags describe."""
    return SimConfig(
        model=ns.model,
        ttft_ms=ns.ttft_ms,
        prefill_tps=ns.prefill_tps,
        itl_ms=ns.itl_ms,
        itl_per_running_ms=ns.itl_per_running_ms,
        cache_blocks=ns.cache_blocks,
        block_size=ns.block_size,
        output_tokens=ns.output_tokens,
        error_rate=ns.error_rate,
        error_status=ns.error_status,
        retry_after_s=ns.retry_after,
        stall_after_tokens=ns.stall_after,
        die_after=ns.die_after,
        seed=ns.seed,
        embedding_dim=ns.embedding_dim,
        max_running_requests=ns.max_running_requests,
    )


def _validate(p: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    pd = ns.pd_prefill + ns.pd_decode
    if ns.http_count is None:
        ns.http_count = 0 if pd else 1
    if ns.pd_prefill < 0 or ns.pd_decode < 0:
        p.error("--pd-prefill and --pd-decode must be >= 0")
    if ns.http_count < 0 or ns.grpc_count < 0 or ns.http_count + ns.grpc_count + pd == 0:
        p.error("need --http-count, --grpc-count and/or --pd-prefill/--pd-decode > 0")
    if not 0.0 <= ns.error_rate <= 1.0:
        p.error("--error-rate must be within [0, 1]")
    if not 100 <= ns.error_status <= 599:
        p.error("--error-status must be an HTTP status")
    if ns.base_port < 0 or ns.base_port + ns.http_count > 65536:
        p.error("--base-port out of range")
    for name in ("ttft_ms", "prefill_tps", "itl_ms", "itl_per_running_ms"):
        if getattr(ns, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")


async def serve(ns: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    """Start the workers, print their URLs, serve until ``stop`` is set or SIGINT / SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    workers: list[Any] = []
    try:
        try:
            workers = await _start_all(ns, config_from_args(ns))
        except ImportError as e:
            print(f"herder sim: gRPC workers unavailable ({e})", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"herder sim: cannot listen: {e}", file=sys.stderr)
            return 1
        for w in workers:
            print(f"{w.url} {w.bootstrap_port}" if getattr(w, "role", None) == "prefill" else w.url)
        sys.stdout.flush()
        await stop.wait()
        return 0
    finally:
        for w in workers:
            await w.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


async def _start_all(ns: argparse.Namespace, cfg: SimConfig) -> list[Any]:
    """Start the HTTP workers, then the gRPC ones; on failure stop what started and re-raise."""
    workers: list[Any] = []
    try:
        for i in range(ns.http_count):
            port = ns.base_port + i if ns.base_port else 0
            engine = SimEngine(dataclasses.replace(cfg, seed=cfg.seed + i))
            w = SimHttpWorker(engine, host=ns.host, port=port, die_mode=ns.die_mode)
            await w.start()
            workers.append(w)
        workers += await _start_pd(ns, cfg, ns.base_port + ns.http_count if ns.base_port else 0)
        if ns.grpc_count:
            grpc_mod = importlib.import_module("herder.sim.grpc_worker")
            opts = dataclasses.asdict(cfg)
            base = ns.grpc_base_port or 0
            workers += await grpc_mod.start_grpc_workers(
                ns.grpc_count, base, ns.tokenizer, ns.grpc_runtime, ns.host, **opts
            )
    except BaseException:
        for w in workers:
            await w.stop()
        raise
    return workers


async def _start_pd(ns: argparse.Namespace, cfg: SimConfig, base_port: int) -> list[Any]:
    """The simulated PD prefill and decode workers (appended to ``workers`` as they start)."""
    from herder.sim.pd import Role, SimPdWorker

    started: list[Any] = []
    try:
        prefill: list[Role] = ["prefill"]
        decode: list[Role] = ["decode"]
        roles = prefill * ns.pd_prefill + decode * ns.pd_decode
        for k, role in enumerate(roles):
            i = k if role == "prefill" else k - ns.pd_prefill
            boot = ns.pd_bootstrap_base_port + i if ns.pd_bootstrap_base_port and role == "prefill" else 0
            engine = SimEngine(dataclasses.replace(cfg, seed=cfg.seed + k))
            w = SimPdWorker(
                role,
                engine,
                flavor=ns.pd_flavor,
                host=ns.host,
                port=base_port + k if base_port else 0,
                bootstrap_port=boot,
                transfer_ms=ns.pd_transfer_ms,
                die_mode=ns.die_mode,
            )
            await w.start()
            started.append(w)
    except BaseException:
        for w in started:
            await w.stop()
        raise
    return started


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``herder sim`` (and ``python -m herder.sim.cli``)."""
    p = build_parser()
    ns = p.parse_args(argv)
    _validate(p, ns)
    loop_factory = None
    if not ns.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(ns))


if __name__ == "__main__":
    raise SystemExit(main())
