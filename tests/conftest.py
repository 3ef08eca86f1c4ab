"""Shared fixtures: an in-process gateway on a free port in front of simulated workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from herder.config import GatewayConfig
from herder.server.app import Gateway
from tests.waiting import wait_for as wait_for  # re-exported: older tests import it from here

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
