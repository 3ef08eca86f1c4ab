"""Shared fixtures: an in-process gateway on a free port in front of simulated workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from herder.config import GatewayConfig
from herder.server.app import Gateway

GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[GatewayFactory]:
    """`await make_gateway(worker_urls=[...], policy="round_robin", ...)` -> a started Gateway on 127.0.0.1."""
    started: list[Gateway] = []

    async def factory(**overrides: Any) -> Gateway:
        defaults: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "prometheus_port": 0,
                                    "worker_startup_timeout_secs": 10.0, "worker_startup_check_interval": 0.1}
        metrics_port = overrides.pop("metrics_port", None)
        defaults.update(overrides)
        gw = Gateway(GatewayConfig(**defaults))
        await gw.start(metrics_port=metrics_port)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.stop()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll until `predicate()` is true, or fail the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met within timeout")
        await asyncio.sleep(interval)
