"""Fixtures for the loadgen tests: `fake_server`, a FakeServer on its own loop in a background thread."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator

import pytest
import uvloop
from loadgen_fakeserver import FakeServer


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every async loadgen test runs on both loops (uvloop's transports differ from asyncio's); sync tests once.
    if inspect.iscoroutinefunction(metafunc.function):
        metafunc.parametrize("event_loop_policy", ["asyncio", "uvloop"], indirect=True)


@pytest.fixture
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if getattr(request, "param", "asyncio") == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    srv = FakeServer()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.base_events.Server] = {}

    async def start() -> None:
        server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
        srv.port = server.sockets[0].getsockname()[1]
        holder["server"] = server
        started.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5)
    yield srv

    async def stop() -> None:
        holder["server"].close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
