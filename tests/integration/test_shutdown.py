"""SIGTERM to a `herder launch` process while long streams run: every stream completes, new connections are
refused, the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import httpx

from herder.sim.fleet import SimFleet, free_port
from tests.integration.reliability_support import CHAT, chat
from tests.waiting import wait_for_async

STREAMS = 8


async def _wait_ready(port: int, proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client:

        async def ready() -> bool:
            if proc.returncode is not None:
                err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
                raise AssertionError(f"the gateway exited during startup: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"http://127.0.0.1:{port}/readiness")).status_code == 200
            return False

        await wait_for_async(ready, timeout=timeout, interval=0.1, message="gateway not ready")


async def test_sigterm_drains_streams_and_exits_zero() -> None:
    async with SimFleet(n=2, ttft_ms=5.0, itl_ms=50.0) as fleet:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "herder", "launch", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *fleet.urls, "--policy", "round_robin", "--prometheus-port", "0",
            "--shutdown-grace-period-secs", "30", "--log-level", "warning",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await _wait_ready(port, proc)
            started = 0
            all_started = asyncio.Event()

            async def stream(i: int) -> list[str]:
                nonlocal started
                lines: list[str] = []
                async with (
                    httpx.AsyncClient(timeout=60) as client,
                    client.stream(
                        "POST",
                        f"http://127.0.0.1:{port}{CHAT}",
                        json=chat(f"s{i}", stream=True, max_tokens=40),
                    ) as r,
                ):
                    assert r.status_code == 200
                    async for line in r.aiter_lines():
                        if line:
                            if not lines:
                                started += 1
                                if started == STREAMS:
                                    all_started.set()
                            lines.append(line)
                return lines

            tasks = [asyncio.create_task(stream(i)) for i in range(STREAMS)]
            await asyncio.wait_for(all_started.wait(), 30)
            os.kill(proc.pid, signal.SIGTERM)
            # the listener closes at once: new connections are refused while the streams drain
            refused = False
            async with httpx.AsyncClient(timeout=2) as client:

                async def connection_refused() -> bool:
                    nonlocal refused
                    try:
                        await client.get(f"http://127.0.0.1:{port}/liveness")
                    except httpx.ConnectError:
                        refused = True
                    return refused

                await wait_for_async(connection_refused, timeout=10, interval=0.02,
                                     message="new connections still accepted 10 s after SIGTERM")
            in_flight_when_refused = sum(1 for t in tasks if not t.done())
            results = await asyncio.gather(*tasks)
            rc = await asyncio.wait_for(proc.wait(), 60)
            stderr = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
            completed = [r for r in results if r and r[-1] == "data: [DONE]"]
            tokens = [sum(1 for x in r if '"content"' in x) for r in results]
            print(
                f"streams completed {len(completed)}/{STREAMS}; in flight when the listener closed "
                f"{in_flight_when_refused}; token events per stream {tokens}; exit code {rc}"
            )
            assert refused and in_flight_when_refused > 0
            assert len(completed) == STREAMS
            assert all(n >= 40 for n in tokens)
            assert rc == 0, stderr[-2000:]
            assert "Traceback" not in stderr, stderr[-2000:]
            assert sum(e.stats.aborted for e in fleet.engines) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
