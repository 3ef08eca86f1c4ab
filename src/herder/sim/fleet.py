"""Fleets of simulated HTTP workers for tests, ``herder demo`` and benchmarks.

In-process (same event loop, free ports)::

    async with SimFleet(n=4, ttft_ms=5, itl_ms=1) as fleet:
        fleet.urls            # ["http://127.0.0.1:40123", ...]
        fleet.engines[0].stats
        await fleet.kill(1)   # close worker 1's listener and connections (as if it died)
        await fleet.restart(1)  # a fresh worker (cold cache) on the same port

Subprocess (a real process per worker, so a test can SIGKILL one and restart it on the same port)::

    fleet = start_subprocess_fleet(2, ttft_ms=5)   # or: await astart_subprocess_fleet(...)
    fleet.workers[0].kill(); fleet.workers[0].restart()
    fleet.close()

Each subprocess runs ``python -m herder.sim.cli --http-count 1 --base-port PORT ...`` (the same code as
``herder sim``) and counts as ready once ``GET /health`` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from herder.sim.engine import SimConfig, SimEngine
from herder.sim.http_worker import DieMode, SimHttpWorker


class SimFleet:
    """``n`` in-process simulated workers sharing one config (worker ``i`` seeds its RNG with ``seed + i``)."""

    def __init__(
        self,
        n: int = 1,
        *,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        config: SimConfig | None = None,
        **engine_config: Any,
    ) -> None:
        if ports is not None and len(ports) != n:
            raise ValueError("ports must name one port per worker")
        base = config if config is not None else SimConfig()
        self.config = dataclasses.replace(base, **engine_config) if engine_config else base
        self.host = host
        self.workers: list[SimHttpWorker] = []
        self._ports = list(ports) if ports is not None else [0] * n
        self.n = n

    def _make(self, i: int, port: int) -> SimHttpWorker:
        engine = SimEngine(dataclasses.replace(self.config, seed=self.config.seed + i))
        die: DieMode = "close"
        return SimHttpWorker(engine, host=self.host, port=port, die_mode=die)

    async def start(self) -> SimFleet:
        try:
            for i, port in enumerate(self._ports):
                w = self._make(i, port)
                await w.start()
                self.workers.append(w)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        for w in self.workers:
            await w.stop()

    async def __aenter__(self) -> SimFleet:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.workers]

    @property
    def engines(self) -> list[SimEngine]:
        return [w.engine for w in self.workers]

    def stats(self, i: int) -> dict[str, object]:
        return self.workers[i].engine.snapshot()

    async def kill(self, i: int) -> None:
        """Make worker ``i`` vanish: close its listener and every connection (in-flight streams break)."""
        w = self.workers[i]
        w.dead.set()
        await w.stop()

    async def restart(self, i: int) -> SimHttpWorker:
        """Replace worker ``i`` by a fresh one (new engine, empty cache) on the same port."""
        old = self.workers[i]
        await old.stop()
        w = self._make(i, old.port)
        await w.start()
        self.workers[i] = w
        return w


# -- subprocess workers ------------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def config_args(config: SimConfig | None = None, **engine_config: Any) -> list[str]:
    """``herder sim`` flags for the config fields that differ from the defaults."""
    cfg = config if config is not None else SimConfig()
    if engine_config:
        cfg = dataclasses.replace(cfg, **engine_config)
    flags = {
        "model": "--model", "ttft_ms": "--ttft-ms", "prefill_tps": "--prefill-tps", "itl_ms": "--itl-ms",
        "itl_per_running_ms": "--itl-per-running-ms", "cache_blocks": "--cache-blocks",
        "block_size": "--block-size", "output_tokens": "--output-tokens", "error_rate": "--error-rate",
        "error_status": "--error-status", "retry_after_s": "--retry-after", "stall_after_tokens": "--stall-after",
        "die_after": "--die-after", "seed": "--seed", "embedding_dim": "--embedding-dim",
        "max_running_requests": "--max-running-requests",
    }  # fmt: skip
    default = SimConfig()
    out: list[str] = []
    for name, flag in flags.items():
        v = getattr(cfg, name)
        if v is not None and v != getattr(default, name):
            out += [flag, str(v)]
    return out


def _health_ok(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@dataclasses.dataclass(slots=True)
class SubprocessWorker:
    """One ``herder sim`` process serving one worker on a fixed port."""

    host: str
    port: int
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None  # the process's stderr (a temp file: a pipe nobody reads could fill and block it)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Spawn the process and wait until ``/health`` answers (raises RuntimeError if it does not)."""
        cmd = [sys.executable, "-m", "herder.sim.cli", "--http-count", "1", "--host", self.host,
               "--base-port", str(self.port), *self.args]  # fmt: skip
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.stderr_text()
                raise RuntimeError(f"sim worker on port {self.port} exited ({self.proc.returncode}): {err}")
            if _health_ok(self.host, self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"sim worker on port {self.port} not healthy after {timeout}s")

    def stderr_text(self) -> str:
        """What the process wrote to stderr so far."""
        if self.log is None:
            return ""
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace"))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM (graceful stop) and reap."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def restart(self, timeout: float = 20.0) -> None:
        """Kill (if running) and start again on the same port."""
        self.kill()
        self.start(timeout)


@dataclasses.dataclass(slots=True)
class SubprocessFleet:
    """Workers in their own processes; ``close()`` (or ``with``) kills them all."""

    workers: list[SubprocessWorker]

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.workers]

    def close(self) -> None:
        for w in self.workers:
            w.terminate()

    def __enter__(self) -> SubprocessFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_subprocess_fleet(
    n: int,
    *,
    host: str = "127.0.0.1",
    ports: Sequence[int] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 20.0,
    config: SimConfig | None = None,
    **engine_config: Any,
) -> SubprocessFleet:
    """Start ``n`` worker processes (free ports unless ``ports``) and wait until each is healthy."""
    ports = list(ports) if ports is not None else [free_port(host) for _ in range(n)]
    args = [*config_args(config, **engine_config), *extra_args]
    fleet = SubprocessFleet([SubprocessWorker(host, p, args) for p in ports])
    procs_started: list[SubprocessWorker] = []
    try:
        for w in fleet.workers:
            w.start(timeout)
            procs_started.append(w)
    except BaseException:
        for w in procs_started:
            w.kill()
        raise
    return fleet


async def astart_subprocess_fleet(n: int, **kwargs: Any) -> SubprocessFleet:
    """``start_subprocess_fleet`` without blocking the event loop."""
    return await asyncio.to_thread(start_subprocess_fleet, n, **kwargs)
