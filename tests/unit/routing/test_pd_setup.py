"""PD configuration: --prefill / --decode parsing, worker specs, installation on the gateway."""

from __future__ import annotations

import pytest

from herder.config import ConfigError, GatewayConfig
from herder.routing.pd import PdRouter
from herder.routing.pd_setup import parse_prefill, worker_specs
from herder.server.app import Gateway


@pytest.mark.parametrize(
    ("entry", "want"),
    [
        (["http://p:8000"], ("http://p:8000", None)),
        (["http://p:8000", "none"], ("http://p:8000", None)),
        (["http://p:8000", "NONE"], ("http://p:8000", None)),
        (["http://p:8000", "8998"], ("http://p:8000", 8998)),
        (["grpc://p:5000", "9000"], ("grpc://p:5000", 9000)),
    ],
)
def test_parse_prefill(entry: list[str], want: tuple[str, int | None]) -> None:
    assert parse_prefill(entry) == want


@pytest.mark.parametrize(
    "entry",
    [[], ["p:8000"], ["http://p", "abc"], ["http://p", "0"], ["http://p", "70000"], ["http://p", "1", "2"]],
)
def test_parse_prefill_rejects(entry: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_prefill(entry)


def test_worker_specs() -> None:
    cfg = GatewayConfig(
        pd_disaggregation=True,
        prefill=[["http://a:1", "8998"], ["http://b:2"]],
        decode=[["http://c:3"]],
        pd_backend="vllm",
    )
    specs = worker_specs(cfg)
    assert [(s.url, s.worker_type, s.bootstrap_port, s.runtime_type) for s in specs] == [
        ("http://a:1", "prefill", 8998, "vllm"),
        ("http://b:2", "prefill", None, "vllm"),
        ("http://c:3", "decode", None, "vllm"),
    ]
    with pytest.raises(ConfigError):
        worker_specs(GatewayConfig(decode=[["http://c:3", "x"]]))


async def test_install_only_with_the_flag() -> None:
    plain = Gateway(GatewayConfig(prometheus_port=0))
    assert not isinstance(plain.router, PdRouter) and "http" in plain.routers
    gw = Gateway(
        GatewayConfig(
            prometheus_port=0,
            pd_disaggregation=True,
            prefill=[["http://a:1"]],
            decode=[["http://c:3"]],
            policy="random",
            decode_policy="round_robin",
        )
    )
    router = gw.router
    assert isinstance(router, PdRouter) and gw.routers["http"] is router
    assert router.prefill_policies.name == "random" and router.decode_policies.name == "round_robin"
    assert gw.startup_hooks and not gw.is_ready()


async def test_bad_prefill_flag_fails_at_construction() -> None:
    with pytest.raises(ConfigError):
        Gateway(GatewayConfig(prometheus_port=0, pd_disaggregation=True, prefill=[["http://a:1", "port"]]))
