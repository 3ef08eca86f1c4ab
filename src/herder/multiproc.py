"""`--workers N`: N gateway processes on one port (SO_REUSEPORT), one supervisor.

The supervisor forks N children. Each child runs a whole gateway with its own socket bound with SO_REUSEPORT, so
the kernel spreads connections across them. What is per process, and what agrees across processes:

- Prefix affinity agrees: children are forked from one interpreter, so they share the string-hash seed, and
  cache_aware places a new prefix by rendezvous hashing of its first blocks (bounded by load) instead of on the
  locally least-loaded worker. Every process therefore sends a prefix group to the same worker, and then finds it
  in its own tree (tested with two processes).
- CPU placement: `--cpu-affinity auto` runs child i on the i-th CPU the gateway may use (round robin past the
  last), so the scheduler neither moves the processes nor stacks two on one core (two processes pinned to one
  core cost 35 % more CPU per request than one process, from cache refills after each switch). The default,
  `none`, leaves placement to the scheduler: on the 2-core benchmark machine, shared with the load generator and
  the workers, pinned and unpinned pairs measured about the same (88 vs 93, 80 vs 80 µs per request) against
  62-85 µs for one process. The difference is preemption, not work: two processes are preempted about once per
  request by the load generator and the workers, one process once every five (bench/workers_sched.py,
  bench/results/workers-1-vs-2.md). More processes pay off where they have cores of their own.
- Health checks, circuit breakers and in-flight load are per process (each probes and counts on its own;
  a dead worker is noticed by each process's own retries and breaker).
- Admission (`--max-concurrent-requests`, `--rate-limit-tokens-per-second`, `--queue-size`) is divided across
  the processes: each gets ceil(value / N), so the gateway as a whole admits about the configured amount.
- Metrics: each child writes snapshots to a private directory once a second; the supervisor serves
  `--prometheus-port` and merges them on each scrape (counters and histograms summed, gauges combined per metric).

SIGTERM/SIGINT to the supervisor is forwarded to every child, which drains for the grace period; the supervisor
exits 0 when all children exited 0. A child that dies on its own is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import tempfile

from herder.config import GatewayConfig

log = logging.getLogger("herder")


def _child_config(cfg: GatewayConfig, n: int) -> GatewayConfig:
    child = dataclasses.replace(cfg, workers=n, prometheus_port=0)
    if cfg.max_concurrent_requests > 0:
        child.max_concurrent_requests = math.ceil(cfg.max_concurrent_requests / n)
        child.queue_size = math.ceil(cfg.queue_size / n)
        if cfg.rate_limit_tokens_per_second is not None:
            child.rate_limit_tokens_per_second = cfg.rate_limit_tokens_per_second / n
    return child


def _run_child(cfg: GatewayConfig, metrics_dir: str, index: int) -> int:
    """In the forked child: serve until SIGTERM, publishing metric snapshots."""
    import uvloop

    from herder.cli import serve

    os.environ["HERDER_PROCESS_INDEX"] = str(index)
    if cfg.cpu_affinity == "auto":
        pin_to_cpu(index)
    return int(uvloop.run(serve(cfg, metrics_dir=metrics_dir)))


def pin_to_cpu(index: int) -> int | None:
    """Run this process on the `index`-th CPU it may use (round robin); the CPU, or None where the platform has
    no affinity call or only one CPU is usable."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(cpus) < 2:
        return None
    cpu = cpus[index % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu


def oversubscribed(n: int) -> str | None:
    """A warning when `n` gateway processes are more than the CPUs this process may use, else None."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    if n <= usable:
        return None
    return (f"--workers {n} is more than the {usable} CPU{'s' if usable > 1 else ''} this gateway may use: "
            "processes will share cores and each request will cost more CPU (fewer processes do more)")


def _fork_child(cfg: GatewayConfig, metrics_dir: str, index: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _run_child(cfg, metrics_dir, index)
        except BaseException:
            log.exception("gateway process %d crashed", index)
        finally:
            os._exit(code)
    return pid


def run_multiprocess(cfg: GatewayConfig) -> int:
    """Supervisor: fork the children, serve merged metrics, forward signals, restart crashed children."""
    n = cfg.workers
    warning = oversubscribed(n)
    if warning is not None:
        log.warning(warning)
    metrics_dir = tempfile.mkdtemp(prefix="herder-metrics-")
    from herder.observability.metrics_server import prepare_multiprocess_dir

    prepare_multiprocess_dir(metrics_dir)
    child_cfg = _child_config(cfg, n)
    children: dict[int, int] = {}  # pid -> index
    for i in range(n):
        children[_fork_child(child_cfg, metrics_dir, i)] = i

    import uvloop

    return int(uvloop.run(_supervise(cfg, child_cfg, metrics_dir, children)))


async def _supervise(cfg: GatewayConfig, child_cfg: GatewayConfig, metrics_dir: str,
                     children: dict[int, int]) -> int:
    from herder.observability.metrics_server import MultiProcessCollector, start_metrics_server

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    server = None
    if cfg.prometheus_port > 0:
        server = await start_metrics_server(MultiProcessCollector(metrics_dir), cfg.prometheus_host,
                                            cfg.prometheus_port)
    log.info("herder supervisor: %d gateway processes on %s:%d", len(children), cfg.host, cfg.port)
    exit_codes: dict[int, int] = {}
    while children:
        if stopping.is_set():
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            break
        await asyncio.sleep(0.2)
        for pid, index in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del children[pid]
                code = os.waitstatus_to_exitcode(status)
                if not stopping.is_set():
                    log.warning("gateway process %d exited with %d; restarting it", index, code)
                    children[_fork_child(child_cfg, metrics_dir, index)] = index
                else:
                    exit_codes[index] = code
    deadline = loop.time() + cfg.shutdown_grace_period_secs + 10
    while children and loop.time() < deadline:
        for pid, index in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del children[pid]
                exit_codes[index] = os.waitstatus_to_exitcode(status)
        await asyncio.sleep(0.1)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        exit_codes[children[pid]] = 1
    if server is not None:
        server.close()
    return 0 if all(code == 0 for code in exit_codes.values()) else 1
