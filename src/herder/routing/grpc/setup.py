"""Plugs the gRPC path into the gateway: the grpc:// prober, the gRPC router, the tokenizer routes, and the
readiness rule (held until every healthy gRPC worker's tokenizer is registered, as SMG does)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from herder.routing.grpc.prober import GrpcProber, tokenizers_ready
from herder.routing.grpc.router import GrpcRouter
from herder.routing.grpc.state import GrpcState
from herder.routing.grpc.tokenize_routes import TokenizerRoutes

if TYPE_CHECKING:
    from herder.server.app import Gateway


def install(gateway: Gateway) -> None:
    """Register `manager.probers["grpc"]`, `routers["grpc"]`, the tokenizer routes and the readiness rule.
    The state is kept as `gateway.grpc` (tests and the admin code read the tokenizer registry there)."""
    config = gateway.config
    state = GrpcState(config)
    prober = GrpcProber(state, gateway.manager.config.health)
    gateway.manager.probers["grpc"] = prober
    http_router = gateway.router
    router = GrpcRouter(
        gateway.registry,
        gateway.policies,
        http_router.retry,
        state,
        hooks=http_router.hooks,
        request_timeout=config.request_timeout_secs,
    )
    router.on_breaker = http_router.on_breaker
    gateway.routers["grpc"] = router
    TokenizerRoutes(gateway, state).install()
    previous = gateway.is_ready
    registry = gateway.registry

    def is_ready() -> bool:
        return previous() and tokenizers_ready(state, registry.workers.values())

    gateway.is_ready = is_ready
    # Extra attributes on the gateway (no field for them in app.py): tests and tools reach the state here.
    setattr(gateway, "grpc", state)  # noqa: B010
    setattr(gateway, "grpc_prober", prober)  # noqa: B010
