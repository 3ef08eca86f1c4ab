"""The gateway: assembles registry, policies, routers and the HTTP server; dispatches every route.

Middleware is inline and cheap: request id (taken from the configured headers or generated with SMG's prefixes,
always echoed as `x-request-id`), auth (Bearer), admission, then the route. Errors raised as `HttpError` become
the OpenAI envelope with `X-SMG-Error-Code`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from herder.config import GatewayConfig
from herder.observability.logging import set_request_id
from herder.observability.metrics import Metrics
from herder.observability.metrics_server import start_metrics_server
from herder.observability.tracing import create_tracer
from herder.policies import PolicyRegistry, make_policy_factory
from herder.policies.cache_aware import CacheAwareConfig
from herder.routing.context import FORWARD_PREFIXES, RequestContext
from herder.routing.http import HttpRouter
from herder.routing.proxy import ProxyCall
from herder.routing.retry import RetryConfig
from herder.server import errors
from herder.server.busy_poll import BusyPoller
from herder.server.errors import HttpError
from herder.server.http import HttpServer, Reply, Request
from herder.server.inference import INFERENCE_ROUTES, InferenceRoute, build_context
from herder.server.telemetry import FLUSH_INTERVAL, HttpToken, RefreshingSource, Telemetry
from herder.workers.breaker import BreakerConfig
from herder.workers.manager import ManagerConfig, WorkerManager
from herder.workers.registry import WorkerRegistry
from herder.workers.worker import HealthConfig, WorkerSpec

log = logging.getLogger("herder")
_rng = random.Random()  # seeded from urandom; reseeded in forked gateway processes
os.register_at_fork(after_in_child=_rng.seed)
_getrandbits = _rng.getrandbits

Route = Callable[[Request, Reply], Awaitable[None]]


class Admission(Protocol):
    """Admission control: `acquire` waits for a token or raises HttpError (429 queue full, 408 timeout)."""

    async def acquire(self, reply: Reply | None = None) -> None: ...

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


class RouterLike(Protocol):
    """What the gateway hands an inference request to (HttpRouter, the gRPC router, the PD router)."""

    async def route(self, ctx: RequestContext, reply: Reply) -> None: ...
def new_request_id(prefix: bytes) -> bytes:
    """SMG's format: prefix + 24 random alphanumerics (hex digits here). Request ids are labels, not secrets:
    a seeded-from-urandom Mersenne Twister is fast and unique enough (96 random bits)."""
    return prefix + b"%024x" % _getrandbits(96)


def _common_suffix(names: tuple[bytes, ...]) -> bytes:
    """The longest ending every name shares."""
    suffix = names[0]
    for name in names[1:]:
        while not name.endswith(suffix):
            suffix = suffix[1:]
    return suffix


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= 128 and all(33 <= c <= 126 for c in value)


class Gateway:
    """One gateway process."""

    def __init__(self, config: GatewayConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.registry = WorkerRegistry()
        health = HealthConfig(
            timeout_secs=config.health_check_timeout_secs,
            check_interval_secs=config.health_check_interval_secs,
            success_threshold=config.health_success_threshold,
            failure_threshold=config.health_failure_threshold,
            disable_health_check=config.disable_health_check,
            endpoint=config.health_check_endpoint,
        )
        breaker = BreakerConfig(
            failure_threshold=config.cb_failure_threshold,
            success_threshold=config.cb_success_threshold,
            timeout_secs=config.cb_timeout_duration_secs,
            enabled=not config.disable_circuit_breaker,
        )
        self.manager = WorkerManager(self.registry, ManagerConfig(
            breaker=breaker, health=health, pool_idle_timeout=config.upstream_pool_idle_timeout_secs,
            remove_unhealthy=config.remove_unhealthy_workers,
            startup_check_interval=config.worker_startup_check_interval,
            startup_timeout=config.worker_startup_timeout_secs,
            drain_timeout=config.shutdown_grace_period_secs,
        ))
        cache_cfg = CacheAwareConfig(
            cache_threshold=config.cache_threshold,
            balance_abs_threshold=config.balance_abs_threshold,
            balance_rel_threshold=config.balance_rel_threshold,
            max_tree_size=config.max_tree_size,
            deterministic_placement=config.workers > 1,
        )
        self.policies = PolicyRegistry(make_policy_factory(config.policy, cache_cfg), config.policy)
        retry = RetryConfig(
            max_retries=config.retry_max_retries,
            initial_backoff_ms=config.retry_initial_backoff_ms,
            max_backoff_ms=config.retry_max_backoff_ms,
            backoff_multiplier=config.retry_backoff_multiplier,
            jitter_factor=config.retry_jitter_factor,
            enabled=not config.disable_retries,
        )
        self.router = HttpRouter(self.registry, self.policies, retry,
                                 request_timeout=config.request_timeout_secs,
                                 stall_timeout=config.stream_body_stall_timeout_secs)
        self._id_headers = tuple(h.lower().encode() for h in config.request_id_headers)
        # Requests with none of these headers (the usual case) skip the request-id and forwarding searches.
        self.server = HttpServer(self.dispatch, max_body_size=config.max_payload_size,
                                 header_read_timeout=config.header_read_timeout_secs,
                                 idle_timeout=config.idle_connection_timeout_secs,
                                 notable_headers=FORWARD_PREFIXES + self._id_headers)
        # The configured names' common ending (SMG's defaults all end in "id"): one substring test rules them all
        # out (usually none is present), far cheaper than a regular expression over the head.
        self._id_header_hint = _common_suffix(self._id_headers) + b":" if self._id_headers else b""
        self._api_key = config.api_key.encode() if config.api_key else None
        admin_key = config.admin_api_key or config.api_key
        self._admin_key = admin_key.encode() if admin_key else None
        self._maintenance: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._poller: BusyPoller | None = None
        from herder.server.admin import AdminRoutes

        self.admin = AdminRoutes(self)
        self.routes: dict[str, dict[bytes, tuple[Route, bool]]] = self.admin.table()
        self.draining = False
        # Under --workers N each process names itself on its responses (operators and tests see the spread).
        index = os.environ.get("HERDER_PROCESS_INDEX")
        self._process_header = (b"x-herder-process", index.encode()) if index is not None else None
        # Routers by connection mode; the gRPC path registers itself here (routing/grpc).
        self.routers: dict[str, RouterLike] = {"http": self.router}
        self._router_cache: dict[str | None, RouterLike] = {}
        self._router_cache_version = -1
        # Extension points for the paths that plug into the gateway (gRPC, PD): async jobs run at start after
        # the configured workers registered, and the readiness rule.
        self.startup_hooks: list[Callable[[], Awaitable[None]]] = []
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self.is_ready: Callable[[], bool] = lambda: self.registry.any_ready(("regular",))
        self.metrics = metrics if metrics is not None else Metrics()
        self.admission: Admission | None = None
        if config.max_concurrent_requests > 0:
            from herder.server.admission import TokenBucketAdmission

            self.admission = TokenBucketAdmission(
                capacity=config.max_concurrent_requests,
                refill_per_second=config.rate_limit_tokens_per_second,
                queue_size=config.queue_size,
                queue_timeout=config.queue_timeout_secs,
                metrics=self.metrics,
            )
        self.telemetry = Telemetry(self.metrics, self, per_request=not config.disable_metrics)
        self._metered = not config.disable_metrics
        self.tracer = create_tracer(config.enable_trace, config.otlp_traces_endpoint)
        from herder.routing.grpc.setup import install as install_grpc
        from herder.routing.pd_setup import install as install_pd

        install_grpc(self)
        install_pd(self)
        self._metrics_server: asyncio.AbstractServer | None = None
        self.metrics_port = 0

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self, *, host: str | None = None, port: int | None = None, reuse_port: bool = False,
                    wait_for_workers: bool = True, metrics_port: int | None = None) -> None:
        """Listen, register the configured workers, start health checks and the metrics listener
        (`--prometheus-port`; 0 disables it unless `metrics_port=0` asks for a free port, as tests do)."""
        cfg = self.config
        if self._admin_key is None:
            log.warning("admin routes (/workers, /flush_cache, ...) are open: set --admin-api-key or --api-key")
        await self.server.start(host if host is not None else cfg.host, port if port is not None else cfg.port,
                                reuse_port=reuse_port)
        if cfg.prometheus_port > 0 or metrics_port == 0:
            server = await start_metrics_server(RefreshingSource(self.telemetry), cfg.prometheus_host,
                                                cfg.prometheus_port if metrics_port is None else metrics_port)
            self._metrics_server = server
            self.metrics_port = server.sockets[0].getsockname()[1]
        jobs = [self.manager.register(WorkerSpec.from_json({"url": url}), wait=wait_for_workers)
                for url in cfg.worker_urls]
        if jobs:
            await asyncio.gather(*jobs)
        for hook in self.startup_hooks:
            await hook()
        self.manager.start_health_checks()
        if self._metered:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if cfg.busy_poll_us > 0:
            self._poller = BusyPoller(asyncio.get_running_loop(), cfg.busy_poll_us / 1e6)
            self.router.hooks.on_sent = self._after_send
        if cfg.eviction_interval_secs > 0:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintenance_loop())

    def _after_send(self) -> None:
        """A proxied request went to a worker: deferred bookkeeping, then poll for its answer (BusyPoller)."""
        if self._metered:
            self.telemetry.flush()
        self._poller.arm()  # type: ignore[union-attr]

    async def _flush_loop(self) -> None:
        """Record finished requests when no new request triggers it (see Telemetry.finished_later)."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.telemetry.flush()

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.eviction_interval_secs)
            self.policies.maintenance()

    async def stop(self, grace: float = 0.0) -> None:
        self.draining = True
        await self.server.stop(grace)
        self.router.sweeper.close()
        for hook in self.shutdown_hooks:
            await hook()
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self.tracer is not None:
            self.tracer.shutdown()
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self.telemetry.flush()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.manager.close()

    @property
    def port(self) -> int:
        return self.server.port

    # -- dispatch ---------------------------------------------------------------------------------------------
    def _request_id(self, request: Request, prefix: bytes) -> bytes:
        if request.notable and request.lower_head.find(self._id_header_hint) >= 0:
            for name in self._id_headers:  # configured order decides which present header wins
                value = request.header(name)
                if value is not None and _valid_request_id(value):
                    return value
        return new_request_id(prefix)

    def dispatch(self, request: Request, reply: Reply) -> Coroutine[Any, Any, None] | None:
        """The server's handler. An inference request bound for HTTP workers is answered without a task (the
        router's callbacks carry it; admission must have a token at hand); anything else returns the coroutine
        the server runs as a task."""
        inference = INFERENCE_ROUTES.get(request.path)
        if inference is None or self.tracer is not None:
            return self.handle(request, reply)
        token = self.telemetry.http_begin(request.method, request.path, inference.path) if self._metered else None
        if self._process_header is not None:
            reply.extra_headers.append(self._process_header)
        ctx, _ = self._prepare(inference, request, reply)
        if isinstance(ctx, str):
            self._http_end(token, request, reply, ctx)
            return None
        model = ctx.model
        router = self.router_for(model)
        if type(router) is not HttpRouter or (model is not None and not self.registry.known_model(model)):
            return self._finish_in_task(ctx, token, request, reply)
        admission = self.admission
        if admission is not None and not admission.try_acquire():
            return self._finish_in_task(ctx, token, request, reply)
        admitted = admission is not None
        router.start(ctx, reply, lambda call: self._proxied(call, token, request, admitted))
        return None

    def _proxied(self, call: ProxyCall, token: HttpToken | None, request: Request, admitted: bool) -> None:
        """A task-less proxy call finished: answer its error, if any, then the bookkeeping `_route` does."""
        ctx, reply = call.ctx, call.reply
        if admitted:
            self.admission.release()  # type: ignore[union-attr]
        if call.error is not None:
            self._error(reply, call.error)
            ctx.error_code = call.error.code
        if self._metered:
            self.telemetry.finished_later(ctx, reply.status, ctx.error_code or "", token, request.method,
                                          request.path)

    async def _finish_in_task(self, ctx: RequestContext, token: HttpToken | None, request: Request,
                              reply: Reply) -> None:
        set_request_id(ctx.request_id.decode("latin-1"))
        await self._route(ctx, reply, None)
        self._http_end(token, request, reply, ctx.error_code or "")

    async def handle(self, request: Request, reply: Reply) -> None:
        """Any request, in a task (admin routes, gRPC and PD routers, tracing, queued admission)."""
        path = request.path
        inference = INFERENCE_ROUTES.get(path)
        token = self.telemetry.http_begin(request.method, path, inference.path if inference else None) \
            if self._metered else None
        if self._process_header is not None:
            reply.extra_headers.append(self._process_header)
        if inference is not None:
            ctx, span = self._prepare(inference, request, reply)
            if isinstance(ctx, str):
                error_code = ctx
            else:
                # Each request runs in its own task: the request id is in every log line it emits.
                set_request_id(ctx.request_id.decode("latin-1"))
                await self._route(ctx, reply, span)
                error_code = ctx.error_code or ""
        else:
            error_code = await self._other(request, reply)
        self._http_end(token, request, reply, error_code)

    def _http_end(self, token: HttpToken | None, request: Request, reply: Reply, error_code: str) -> None:
        if token is not None:
            self.telemetry.http_end(token, reply.status, error_code, request.method, request.path,
                                    next((v for k, v in reply.extra_headers if k == b"x-request-id"), None))

    def _prepare(self, route: InferenceRoute, request: Request, reply: Reply) -> tuple[RequestContext | str, Any]:
        """Request id, method, auth, tracing span, body parsed once and validated: the context and the span, or
        the error code already answered."""
        request_id = self._request_id(request, route.id_prefix)
        reply.extra_headers.append((b"x-request-id", request_id))
        if request.method != b"POST":
            return self._error(reply, HttpError(405, errors.METHOD_NOT_ALLOWED,
                                                f"Method {request.method.decode()} not allowed on {request.path}")), None
        if self._api_key is not None and not self._authorized(request, self._api_key):
            return self._error(reply, HttpError(401, errors.UNAUTHORIZED, "Invalid or missing API key")), None
        span = None
        traceparent = None
        if self.tracer is not None:
            span = self.tracer.start_span(f"POST {route.path}", request.header(b"traceparent"),
                                          {"http.route": route.path, "smg.request_id": request_id.decode()})
            traceparent = self.tracer.traceparent(span).encode()
        try:
            return build_context(route, request, request_id, traceparent), span
        except HttpError as exc:
            code = self._error(reply, exc)
            if span is not None:
                self.tracer.end_span(span, status_code=reply.status, error=code)  # type: ignore[union-attr]
            return code, None

    async def _route(self, ctx: RequestContext, reply: Reply, span: Any) -> None:
        """Model check, admission, the router; then router metrics and the span."""
        admission = self.admission
        admitted = False
        try:
            self._check_model(ctx.model)
            if admission is not None:
                # The token is held until the response body is complete (route returns then) or the client left.
                await admission.acquire(reply)
                admitted = True
            await self.router_for(ctx.model).route(ctx, reply)
        except HttpError as exc:
            self._error(reply, exc)
            ctx.error_code = exc.code
        finally:
            if admitted:
                admission.release()  # type: ignore[union-attr]
        if self._metered:
            self.telemetry.router_end(ctx, reply.status, ctx.error_code)
        if span is not None:
            self.tracer.end_span(span, status_code=reply.status, error=ctx.error_code,  # type: ignore[union-attr]
                                 attributes={"gen_ai.request.model": ctx.model or ""})

    async def _other(self, request: Request, reply: Reply) -> str:
        path = request.path
        reply.extra_headers.append((b"x-request-id", self._request_id(request, b"req-")))
        methods = self.routes.get(path)
        if methods is None:
            methods, params = self.admin.match_dynamic(path)
            if methods is None:
                return self._error(reply, HttpError(404, errors.ROUTE_NOT_FOUND, f"No route for {path}"))
            request.state["params"] = params
        entry = methods.get(request.method)
        if entry is None:
            if request.method == b"HEAD" and b"GET" in methods:
                entry = methods[b"GET"]
            else:
                allowed = b", ".join(sorted(methods))
                return self._error(reply, HttpError(
                    405, errors.METHOD_NOT_ALLOWED, f"Method {request.method.decode()} not allowed on {path}",
                    headers=[(b"allow", allowed)]))
        handler, admin = entry
        if admin and self._admin_key is not None and not self._authorized(request, self._admin_key):
            return self._error(reply, HttpError(401, errors.UNAUTHORIZED, "Invalid or missing admin API key"))
        try:
            await handler(request, reply)
        except HttpError as exc:
            return self._error(reply, exc)
        return ""

    def router_for(self, model: str | None) -> RouterLike:
        """The router of the workers serving `model`: gRPC when they are grpc:// workers, else HTTP."""
        version = self.registry.version
        if version != self._router_cache_version:
            self._router_cache = {}
            self._router_cache_version = version
        router = self._router_cache.get(model)
        if router is None:
            router = self.router
            workers = self.registry.workers_for(model)
            if workers and all(w.connection_mode == "grpc" for w in workers):
                grpc_router = self.routers.get("grpc")
                if grpc_router is not None:
                    router = grpc_router
            self._router_cache[model] = router
        return router

    def _check_model(self, model: str | None) -> None:
        if model is not None and not self.registry.known_model(model):
            raise HttpError(404, errors.MODEL_NOT_FOUND, f"Model '{model}' not found", "model")

    @staticmethod
    def _authorized(request: Request, key: bytes) -> bool:
        value = request.header(b"authorization")
        if value is None:
            value = request.header(b"x-api-key")
            return value is not None and hmac.compare_digest(value.strip(), key)
        if value[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(value[7:].strip(), key)

    @staticmethod
    def _error(reply: Reply, exc: HttpError) -> str:
        """Answer with the error envelope (or an SSE error event if a stream already started); returns the code."""
        if reply.started:
            if not reply.done:
                reply.end_stream(errors.sse_error_event(exc.message, exc.code, exc.status))
            return exc.code
        headers = [(b"x-smg-error-code", exc.code.encode())]
        if exc.headers:
            headers.extend(exc.headers)
        reply.send(exc.status, exc.body(), headers)
        return exc.code
