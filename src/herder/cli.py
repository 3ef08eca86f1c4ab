"""`herder launch | demo | sim | bench`: the command line, with SMG's flag names and defaults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from herder import __version__
from herder.config import ConfigError, GatewayConfig, add_arguments, build_config

log = logging.getLogger("herder")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _launch_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="herder launch", description="Run the gateway.")
    add_arguments(parser)
    return parser


def _setup_logging(cfg: GatewayConfig) -> None:
    from herder.observability.logging import setup_logging

    setup_logging(cfg.log_level, json=cfg.log_json, log_dir=cfg.log_dir, access_log=cfg.access_log)


async def serve(cfg: GatewayConfig, metrics_dir: str | None = None) -> int:
    """Run one gateway process until SIGINT/SIGTERM; drain in-flight requests for the grace period.
    With `metrics_dir` (a child of --workers N) it publishes metric snapshots for the supervisor."""
    from herder.server.app import Gateway

    gateway = Gateway(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start(reuse_port=cfg.workers > 1)
    writer_task = None
    if metrics_dir is not None:
        from herder.observability.metrics_server import SnapshotWriter

        writer = SnapshotWriter(gateway.metrics, metrics_dir, before_write=gateway.telemetry.refresh_gauges)
        writer_task = loop.create_task(writer.run())
    log.info("herder %s listening on %s:%d (%d workers, policy %s)", __version__, cfg.host, gateway.port,
             len(gateway.registry), cfg.policy)
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %g s)", cfg.shutdown_grace_period_secs)
    await gateway.stop(cfg.shutdown_grace_period_secs)
    if writer_task is not None:
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer_task
    return 0


def launch(argv: Sequence[str]) -> int:
    parser = _launch_parser()
    args = parser.parse_args(list(argv))
    try:
        cfg = build_config(args, getattr(args, "config", None))
    except ConfigError as exc:
        print(f"herder: error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg)
    if cfg.workers > 1:
        from herder.multiproc import run_multiprocess

        return run_multiprocess(cfg)
    import uvloop

    return uvloop.run(serve(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"launch", "demo", "sim", "bench"}
    if not argv or argv[0] in ("-h", "--help"):
        print(f"herder {__version__}: an LLM inference gateway\n\n"
              "usage: herder {launch,demo,sim,bench} [options]\n\n"
              "  launch   run the gateway (SMG-compatible flags; herder launch --help)\n"
              "  demo     simulated fleet + gateway + a short workload and a summary\n"
              "  sim      simulated engine workers (HTTP and gRPC)\n"
              "  bench    load generator for any OpenAI-compatible endpoint")
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in commands:
        print(f"herder: error: unknown command '{command}' (choose from launch, demo, sim, bench)", file=sys.stderr)
        return 2
    if command == "launch":
        return launch(rest)
    if command == "sim":
        from herder.sim.cli import main as sim_main

        return sim_main(rest)
    if command == "bench":
        from herder.loadgen.cli import main as bench_main

        return bench_main(rest)
    from herder.demo import main as demo_main

    return demo_main(rest)
