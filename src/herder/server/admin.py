"""Public info routes (health, models, server info) and admin routes (/workers CRUD, loads, cache flush, parsers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Reply, Request
from herder.workers.pool import UpstreamError, fetch
from herder.workers.worker import Worker, WorkerSpec, WorkerSpecError, WorkerStatus

if TYPE_CHECKING:
    from herder.server.app import Gateway

Route = Callable[[Request, Reply], Awaitable[None]]
JSON = b"application/json"


def _json(reply: Reply, status: int, data: Any) -> None:
    reply.send(status, orjson.dumps(data), None, JSON)


def _body(request: Request) -> Any:
    if not request.body:
        raise HttpError(400, errors.INVALID_JSON, "Request body is empty; expected JSON")
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, errors.INVALID_JSON, f"Invalid JSON body: {exc}") from None


class AdminRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        # Routes with a path parameter registered by other modules: (prefix, methods); the handler finds the
        # rest of the path in request.state["params"]["rest"].
        self.prefix_routes: list[tuple[str, dict[bytes, tuple[Route, bool]]]] = []

    def table(self) -> dict[str, dict[bytes, tuple[Route, bool]]]:
        """path -> method -> (handler, requires admin auth)."""
        return {
            "/health": {b"GET": (self.liveness, False)},
            "/liveness": {b"GET": (self.liveness, False)},
            "/readiness": {b"GET": (self.readiness, False)},
            "/health_generate": {b"GET": (self.health_generate, False)},
            "/v1/models": {b"GET": (self.models, False)},
            "/get_model_info": {b"GET": (self.proxy_get("/get_model_info"), False)},
            "/get_server_info": {b"GET": (self.proxy_get("/get_server_info"), False)},
            "/get_loads": {b"GET": (self.loads, True)},
            "/flush_cache": {b"POST": (self.flush_cache, True)},
            "/workers": {b"GET": (self.list_workers, True), b"POST": (self.add_worker, True)},
            "/parser/tool": {b"POST": (self.parse_tool, True)},
            "/parse/function_call": {b"POST": (self.parse_tool, True)},
            "/parser/reasoning": {b"POST": (self.parse_reasoning, True)},
            "/parse/reasoning": {b"POST": (self.parse_reasoning, True)},
        }

    def match_dynamic(self, path: str) -> tuple[dict[bytes, tuple[Route, bool]] | None, dict[str, str]]:
        if path.startswith("/workers/"):
            worker_id = path[len("/workers/"):]
            if worker_id and "/" not in worker_id:
                return {
                    b"GET": (self.get_worker, True),
                    b"PUT": (self.put_worker, True),
                    b"PATCH": (self.patch_worker, True),
                    b"DELETE": (self.delete_worker, True),
                }, {"id": worker_id}
        for prefix, methods in self.prefix_routes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return methods, {"rest": path[len(prefix):]}
        return None, {}

    # -- health and info ------------------------------------------------------------------------------------------
    async def liveness(self, request: Request, reply: Reply) -> None:
        reply.send(200, b"OK", None, b"text/plain")

    async def readiness(self, request: Request, reply: Reply) -> None:
        ready = not self.gw.draining and self.gw.is_ready()
        if ready:
            _json(reply, 200, {"status": "ready"})
        else:
            reason = "shutting down" if self.gw.draining else "no healthy workers"
            reply.send(503, errors.error_body(f"Not ready: {reason}", errors.NO_AVAILABLE_WORKERS, 503),
                       [(b"x-smg-error-code", errors.NO_AVAILABLE_WORKERS.encode())])

    async def models(self, request: Request, reply: Reply) -> None:
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "herder"}
                for m in self.gw.registry.models()]
        _json(reply, 200, {"object": "list", "data": data})

    def _any_worker(self) -> Worker:
        for worker in self.gw.registry.workers.values():
            if worker.is_available():
                return worker
        raise HttpError(503, errors.NO_AVAILABLE_WORKERS, "No available workers")

    def proxy_get(self, path: str) -> Route:
        async def handler(request: Request, reply: Reply) -> None:
            worker = self._any_worker()
            try:
                status, body = await fetch(worker.pool, b"GET", path, worker.host_header, timeout=10.0)
            except UpstreamError as exc:
                raise HttpError(502, errors.UPSTREAM_CONNECTION_FAILED, f"{worker.url}: {exc}") from exc
            reply.send(status, body, None, JSON)
        return handler

    async def health_generate(self, request: Request, reply: Reply) -> None:
        await self.proxy_get("/health_generate")(request, reply)

    async def loads(self, request: Request, reply: Reply) -> None:
        workers = list(self.gw.registry.workers.values())

        async def one(worker: Worker) -> dict[str, Any]:
            details: Any = None
            load = -1
            try:
                status, body = await fetch(worker.pool, b"GET", "/get_load", worker.host_header, timeout=5.0)
                if status == 200:
                    details = orjson.loads(body)
                    raw = details.get("load") if isinstance(details, dict) else None
                    load = raw if isinstance(raw, int) else worker.load
            except (UpstreamError, orjson.JSONDecodeError):
                pass
            return {"worker": worker.url, "worker_type": worker.worker_type, "load": load,
                    "gateway_in_flight": worker.load, "details": details}

        results = await asyncio.gather(*(one(w) for w in workers))
        _json(reply, 200, {"workers": list(results)})

    async def flush_cache(self, request: Request, reply: Reply) -> None:
        workers = [w for w in self.gw.registry.workers.values() if w.connection_mode == "http"]

        async def one(worker: Worker) -> bool:
            try:
                status, _ = await fetch(worker.pool, b"POST", "/flush_cache", worker.host_header, timeout=10.0)
                return 200 <= status < 300
            except UpstreamError:
                return False

        results = await asyncio.gather(*(one(w) for w in workers))
        ok = [w.url for w, r in zip(workers, results, strict=True) if r]
        failed = [w.url for w, r in zip(workers, results, strict=True) if not r]
        status = 200 if not failed else 206
        _json(reply, status, {
            "status": "success" if not failed else "partial_success",
            "message": f"flushed {len(ok)} of {len(workers)} workers",
            "workers_flushed": len(ok), "total_http_workers": len(workers),
            "total_workers": len(self.gw.registry), "successful": ok, "failed": failed,
        })

    # -- workers --------------------------------------------------------------------------------------------------
    def _worker(self, request: Request) -> Worker:
        worker_id = request.state["params"]["id"]
        worker = self.gw.registry.get(worker_id)
        if worker is None:
            # Accept a URL-encoded worker URL too.
            from urllib.parse import unquote

            worker = self.gw.registry.find_by_url(unquote(worker_id))
        if worker is None:
            raise HttpError(404, errors.WORKER_NOT_FOUND, f"Worker '{worker_id}' not found")
        return worker

    async def list_workers(self, request: Request, reply: Reply) -> None:
        model = None
        if request.query:
            from urllib.parse import parse_qs

            model = parse_qs(request.query.decode("latin-1")).get("model", [None])[0]
        workers = [w for w in self.gw.registry.workers.values() if model is None or w.serves(model)]
        by_type = {"regular": 0, "prefill": 0, "decode": 0}
        for worker in workers:
            by_type[worker.worker_type] = by_type.get(worker.worker_type, 0) + 1
        infos = []
        for worker in workers:
            info = worker.info()
            info["job_status"] = self.gw.manager.jobs.get(worker.id)
            infos.append(info)
        _json(reply, 200, {
            "workers": infos,
            "total": len(workers),
            "stats": {
                "total_workers": len(workers),
                "healthy_workers": sum(1 for w in workers if w.status is WorkerStatus.READY),
                "total_models": len({m for w in workers for m in w.models}),
                "total_load": sum(w.load for w in workers),
                "by_type": by_type,
            },
        })

    async def add_worker(self, request: Request, reply: Reply) -> None:
        try:
            spec = WorkerSpec.from_json(_body(request))
        except WorkerSpecError as exc:
            raise HttpError(400, errors.INVALID_REQUEST, str(exc)) from None
        if self.gw.registry.find_by_url(spec.url) is not None:
            raise HttpError(409, "worker_already_exists", f"Worker {spec.url} is already registered")
        worker = await self.gw.manager.register(spec, wait=False)
        _json(reply, 202, {"status": "accepted", "worker_id": worker.id, "url": worker.url,
                           "location": f"/workers/{worker.id}",
                           "message": "registration started; the worker is routable once healthy"})

    async def get_worker(self, request: Request, reply: Reply) -> None:
        worker = self._worker(request)
        info = worker.info()
        info["job_status"] = self.gw.manager.jobs.get(worker.id)
        _json(reply, 200, info)

    async def put_worker(self, request: Request, reply: Reply) -> None:
        worker = self._worker(request)
        try:
            spec = WorkerSpec.from_json(_body(request))
        except WorkerSpecError as exc:
            raise HttpError(400, errors.INVALID_REQUEST, str(exc)) from None
        if spec.url != worker.url:
            raise HttpError(400, errors.INVALID_REQUEST, "'url' must equal the existing worker's URL", "url")
        self.gw.registry.remove(worker.id)
        new = await self.gw.manager.register(spec, wait=False)
        _json(reply, 202, {"status": "accepted", "worker_id": new.id, "url": new.url,
                           "location": f"/workers/{new.id}", "message": "re-registration started"})

    async def patch_worker(self, request: Request, reply: Reply) -> None:
        worker = self._worker(request)
        body = _body(request)
        if not isinstance(body, dict):
            raise HttpError(400, errors.INVALID_REQUEST, "body must be a JSON object")
        allowed = {"priority", "cost", "labels", "api_key", "health"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise HttpError(400, errors.INVALID_REQUEST, f"field '{unknown[0]}' cannot be updated", unknown[0])
        if "priority" in body:
            if not isinstance(body["priority"], int) or isinstance(body["priority"], bool) or body["priority"] < 0:
                raise HttpError(400, errors.INVALID_REQUEST, "'priority' must be a non-negative integer", "priority")
            worker.priority = worker.spec.priority = body["priority"]
        if "cost" in body:
            if not isinstance(body["cost"], int | float) or isinstance(body["cost"], bool):
                raise HttpError(400, errors.INVALID_REQUEST, "'cost' must be a number", "cost")
            worker.cost = worker.spec.cost = float(body["cost"])
        if "labels" in body:
            labels = body["labels"]
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise HttpError(400, errors.INVALID_REQUEST, "'labels' must be an object of strings", "labels")
            worker.labels = worker.spec.labels = dict(labels)
        if "api_key" in body:
            if body["api_key"] is not None and not isinstance(body["api_key"], str):
                raise HttpError(400, errors.INVALID_REQUEST, "'api_key' must be a string", "api_key")
            worker.api_key = worker.spec.api_key = body["api_key"]
        if "health" in body:
            health = body["health"]
            if not isinstance(health, dict):
                raise HttpError(400, errors.INVALID_REQUEST, "'health' must be an object", "health")
        _json(reply, 202, {"status": "accepted", "worker_id": worker.id, "url": worker.url,
                           "location": f"/workers/{worker.id}", "message": "worker updated"})

    async def delete_worker(self, request: Request, reply: Reply) -> None:
        worker = self._worker(request)
        self.gw.manager.remove(worker.id)
        _json(reply, 202, {"status": "accepted", "worker_id": worker.id, "url": worker.url,
                           "location": f"/workers/{worker.id}",
                           "message": "worker is draining; it is removed once in-flight requests finish"})

    # -- parsers ----------------------------------------------------------------------------------------------
    async def parse_tool(self, request: Request, reply: Reply) -> None:
        from herder.parsers.endpoints import parse_tool_request

        body = _body(request)
        status, data = parse_tool_request(body) if isinstance(body, dict) else (
            400, orjson.loads(errors.error_body("body must be a JSON object", errors.INVALID_REQUEST, 400)))
        _json(reply, status, data)

    async def parse_reasoning(self, request: Request, reply: Reply) -> None:
        from herder.parsers.endpoints import parse_reasoning_request

        body = _body(request)
        status, data = parse_reasoning_request(body) if isinstance(body, dict) else (
            400, orjson.loads(errors.error_body("body must be a JSON object", errors.INVALID_REQUEST, 400)))
        _json(reply, status, data)
