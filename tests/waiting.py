"""Waiting on conditions, not fixed delays: the only polling loops of the test suite.

Every helper polls a condition until it holds and fails the test (AssertionError) once `timeout` seconds have
passed; the timeout is a bound, never a timing assertion. `message` is the failure text, or a callable giving
it (evaluated only on failure, so it can report the state seen last).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable

import httpx

Message = str | Callable[[], str]
DEFAULT_MESSAGE = "condition not met within timeout"


def _text(message: Message) -> str:
    return message if isinstance(message, str) else message()


async def wait_for_async(
    probe: Callable[[], Awaitable[bool]],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: Message = DEFAULT_MESSAGE,
) -> None:
    """Await `probe()` until it returns true (an HTTP poll, say), or fail the test. Exceptions propagate."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise AssertionError(_text(message))
        await asyncio.sleep(interval)


async def wait_for(
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: Message = DEFAULT_MESSAGE,
) -> None:
    """Poll `predicate()` from the event loop until it is true, or fail the test."""

    async def probe() -> bool:
        return predicate()

    await wait_for_async(probe, timeout, interval, message)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: Message = DEFAULT_MESSAGE,
) -> None:
    """Blocking `wait_for`, for tests driving threads or subprocesses without an event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(_text(message))
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """`GET url` answered 200 (a refused or timed-out connection is just "not yet")."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def output_tail(proc: subprocess.Popen[bytes], limit: int = 2000) -> str:
    """What `proc` has written to its stdout pipe so far (without blocking on a process still running)."""
    if proc.stdout is None:
        return ""
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        data = proc.stdout.read() or b""
    except (BlockingIOError, ValueError):
        data = b""
    return data.decode(errors="replace")[-limit:]


def wait_for_process(
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    what: str,
    timeout: float,
    interval: float = 0.1,
) -> None:
    """Poll `ready()` (e.g. `lambda: http_ok(url + "/readiness")`) while `proc` starts up. Fails fast, with the
    process's output, if it exits first; fails with its output so far if it is not ready within `timeout`."""

    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {output_tail(proc)}")
        return ready()

    def late() -> str:
        return f"{what} did not become ready within {timeout:.0f} s: {output_tail(proc)}"

    wait_until(check, timeout, interval, message=late)
