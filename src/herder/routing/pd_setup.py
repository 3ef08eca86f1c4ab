"""Plugs prefill/decode disaggregation into the gateway (`--pd-disaggregation`).

* the configured `--prefill URL [BOOTSTRAP_PORT|none]` and `--decode URL` workers are registered at start
  (startup hook; POST /workers with `worker_type` prefill/decode works as for any worker);
* the PD router replaces the HTTP router (`gateway.router` and `gateway.routers["http"]`); requests for a model
  without PD workers fall back to the regular HTTP router, or to the gRPC router for grpc:// workers;
* prefill and decode policies come from `--prefill-policy` / `--decode-policy` (default `--policy`);
* readiness needs a healthy prefill **and** a healthy decode worker (smg-spec 1.5);
* model checks accept models served by prefill/decode workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herder.config import ConfigError
from herder.policies import PolicyRegistry, make_policy_factory
from herder.policies.cache_aware import CacheAwareConfig
from herder.routing.grpc.prober import tokenizers_ready
from herder.routing.grpc.router import GrpcRouter
from herder.routing.pd import PdRouter
from herder.routing.pd_grpc_router import PdGrpcRouter
from herder.server import errors
from herder.server.errors import HttpError
from herder.workers.worker import WorkerSpec

if TYPE_CHECKING:
    from herder.routing.context import RequestContext
    from herder.server.app import Gateway

PD_TYPES = ("prefill", "decode")


def parse_prefill(entry: list[str]) -> tuple[str, int | None]:
    """One `--prefill URL [BOOTSTRAP_PORT|none]` value -> (url, bootstrap port or None)."""
    if not entry or len(entry) > 2:
        raise ConfigError(f"'prefill': expected URL [BOOTSTRAP_PORT|none], got {entry!r}")
    url = entry[0]
    if not url.startswith(("http://", "grpc://")):
        raise ConfigError(f"'prefill': {url!r} must start with http:// or grpc://")
    if len(entry) == 1 or entry[1].lower() in ("none", "null", ""):
        return url, None
    try:
        port = int(entry[1])
    except ValueError:
        raise ConfigError(f"'prefill': bootstrap port {entry[1]!r} is not a number or 'none'") from None
    if not 0 < port < 65536:
        raise ConfigError(f"'prefill': bootstrap port {port} is out of range")
    return url, port


def worker_specs(config: Any) -> list[WorkerSpec]:
    """The WorkerSpecs of the configured prefill and decode workers (validated)."""
    runtime = config.pd_backend or "unspecified"
    specs = []
    for entry in config.prefill:
        url, port = parse_prefill(entry)
        specs.append(
            WorkerSpec.from_json(
                {"url": url, "worker_type": "prefill", "bootstrap_port": port, "runtime_type": runtime}
            )
        )
    for entry in config.decode:
        if len(entry) != 1 or not entry[0].startswith(("http://", "grpc://")):
            raise ConfigError(f"'decode': expected one http:// or grpc:// URL, got {entry!r}")
        specs.append(
            WorkerSpec.from_json({"url": entry[0], "worker_type": "decode", "runtime_type": runtime})
        )
    return specs


def _policies(name: str, cache: CacheAwareConfig) -> PolicyRegistry:
    return PolicyRegistry(make_policy_factory(name, cache), name)


def install(gateway: Gateway) -> None:
    """With --pd-disaggregation: register prefill/decode workers at start, route through the PD router, and
    require a healthy prefill and decode worker for readiness."""
    cfg = gateway.config
    if not cfg.pd_disaggregation:
        return
    specs = worker_specs(cfg)  # fail at construction on a bad flag, not later
    cache = CacheAwareConfig(
        cache_threshold=cfg.cache_threshold,
        balance_abs_threshold=cfg.balance_abs_threshold,
        balance_rel_threshold=cfg.balance_rel_threshold,
        max_tree_size=cfg.max_tree_size,
    )
    prefill_policies = _policies(cfg.prefill_policy or cfg.policy, cache)
    decode_policies = _policies(cfg.decode_policy or cfg.policy, cache)
    http = gateway.router
    registry = gateway.registry

    def fallback(ctx: RequestContext) -> Any:
        """Who serves a request: None = the HTTP PD path; the gRPC router (in PD mode) for gRPC PD workers or
        regular grpc:// workers; the regular HTTP router for a model with only regular http:// workers."""
        pd = registry.workers_for(ctx.model, "prefill")
        if pd:
            return gateway.routers.get("grpc") if all(w.connection_mode == "grpc" for w in pd) else None
        workers = registry.workers_for(ctx.model)
        if workers and all(w.connection_mode == "grpc" for w in workers):
            return gateway.routers.get("grpc")
        return http if workers else None

    router = PdRouter(
        http, prefill_policies, decode_policies, gateway.metrics, backend=cfg.pd_backend, fallback=fallback
    )
    grpc_router = gateway.routers.get("grpc")
    if isinstance(grpc_router, GrpcRouter):
        gateway.routers["grpc"] = PdGrpcRouter(grpc_router, router)
    gateway.pd_router = router  # type: ignore[attr-defined]
    gateway.router = router  # type: ignore[assignment]
    gateway.routers["http"] = router

    async def register() -> None:
        import asyncio

        jobs = [
            gateway.manager.register(spec, wait=True)
            for spec in specs
            if registry.find_by_url(spec.url) is None
        ]
        if jobs:
            await asyncio.gather(*jobs)

    async def close() -> None:
        await router.close()

    gateway.startup_hooks.append(register)
    gateway.shutdown_hooks.append(close)
    grpc_state = getattr(gateway, "grpc", None)

    def is_ready() -> bool:
        if not (registry.any_ready(("prefill",)) and registry.any_ready(("decode",))):
            return False
        # As the gRPC path: held until every healthy gRPC worker's tokenizer is registered.
        return grpc_state is None or tokenizers_ready(grpc_state, registry.workers.values())

    gateway.is_ready = is_ready

    def check_model(model: str | None) -> None:
        # The gateway's own check looks at regular workers only; PD workers serve models too.
        if model is None:
            return
        if any(registry.known_model(model, t) for t in ("regular", *PD_TYPES)):
            return
        raise HttpError(404, errors.MODEL_NOT_FOUND, f"Model '{model}' not found", "model")

    gateway._check_model = check_model  # type: ignore[method-assign]
