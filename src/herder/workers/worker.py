"""A worker (one model server) and its routable state: status machine, breaker, in-flight load, upstream pool."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from herder.workers.breaker import BreakerConfig, CircuitBreaker
from herder.workers.pool import UpstreamPool

WORKER_TYPES = ("regular", "prefill", "decode")
CONNECTION_MODES = ("http", "grpc")


class WorkerStatus(Enum):
    """SMG's worker status machine (spec 4.3)."""

    PENDING = "pending"
    READY = "ready"
    NOT_READY = "not_ready"
    FAILED = "failed"
    DRAINING = "draining"


class WorkerSpecError(ValueError):
    """A WorkerSpec field is missing or invalid; the message names the field."""


@dataclass(slots=True)
class HealthConfig:
    timeout_secs: float = 5.0
    check_interval_secs: float = 60.0
    success_threshold: int = 2
    failure_threshold: int = 3
    disable_health_check: bool = False
    endpoint: str = "/health"


@dataclass(slots=True)
class WorkerSpec:
    """What a client gives to register a worker (SMG's WorkerSpec fields that apply to HTTP workers)."""

    url: str
    models: list[str] = field(default_factory=list)
    worker_type: str = "regular"
    connection_mode: str = "http"
    labels: dict[str, str] = field(default_factory=dict)
    priority: int = 50
    cost: float = 1.0
    api_key: str | None = None
    bootstrap_port: int | None = None
    runtime_type: str = "unspecified"

    @classmethod
    def from_json(cls, data: Any) -> WorkerSpec:
        if not isinstance(data, dict):
            raise WorkerSpecError("worker spec must be a JSON object")
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise WorkerSpecError("'url' is required and must be a string")
        known = {"url", "models", "model_id", "worker_type", "connection_mode", "labels", "priority", "cost",
                 "api_key", "bootstrap_port", "runtime_type", "runtime", "health", "http_pool", "resilience",
                 "provider", "max_connection_attempts"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkerSpecError(f"unknown field '{unknown[0]}'")
        models = _parse_models(data.get("models", []))
        if isinstance(data.get("model_id"), str):
            models = [data["model_id"], *models]
        spec = cls(url=url.rstrip("/"), models=models)
        wt = data.get("worker_type", "regular")
        if wt not in WORKER_TYPES:
            raise WorkerSpecError(f"'worker_type' must be one of {', '.join(WORKER_TYPES)}")
        spec.worker_type = wt
        cm = data.get("connection_mode")
        if cm is None:
            cm = "grpc" if url.startswith(("grpc://", "grpcs://")) else "http"
        if cm not in CONNECTION_MODES:
            raise WorkerSpecError(f"'connection_mode' must be one of {', '.join(CONNECTION_MODES)}")
        spec.connection_mode = cm
        labels = data.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise WorkerSpecError("'labels' must be an object of strings")
        spec.labels = dict(labels)
        spec.priority = _int_field(data, "priority", 50)
        cost = data.get("cost", 1.0)
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise WorkerSpecError("'cost' must be a number")
        spec.cost = float(cost)
        key = data.get("api_key")
        if key is not None and not isinstance(key, str):
            raise WorkerSpecError("'api_key' must be a string")
        spec.api_key = key
        bp = data.get("bootstrap_port")
        if bp is not None:
            spec.bootstrap_port = _int_field(data, "bootstrap_port", 0)
        rt = data.get("runtime_type", data.get("runtime", "unspecified"))
        if not isinstance(rt, str):
            raise WorkerSpecError("'runtime_type' must be a string")
        spec.runtime_type = rt
        _split_url(spec.url)
        return spec


def _int_field(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WorkerSpecError(f"'{name}' must be a non-negative integer")
    return value


def _parse_models(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise WorkerSpecError("'models' must be a list")
    out: list[str] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("id"), str):
            out.append(item["id"])
        else:
            raise WorkerSpecError("'models' items must be strings or objects with an 'id'")
    return out


def _split_url(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WorkerSpecError(f"'url' is not a valid URL: {url}") from exc
    if parts.scheme not in ("http", "grpc") or not parts.hostname:
        raise WorkerSpecError(f"'url' must be http://host:port or grpc://host:port, got {url}")
    if port is None:
        port = 80 if parts.scheme == "http" else 50051
    return parts.scheme, parts.hostname, port


def worker_id_for(url: str) -> str:
    """A stable id derived from the URL, so the same worker keeps its id across re-registration."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class Worker:
    """Routable state of one registered worker. Hot fields are plain attributes (no properties)."""

    __slots__ = (
        "api_key",
        "bootstrap_port",
        "breaker",
        "client",
        "connection_mode",
        "cost",
        "health",
        "health_failures",
        "health_successes",
        "host",
        "host_header",
        "id",
        "labels",
        "load",
        "models",
        "pool",
        "port",
        "priority",
        "processed",
        "runtime_type",
        "spec",
        "status",
        "url",
        "worker_type",
    )

    def __init__(self, spec: WorkerSpec, *, breaker: BreakerConfig, health: HealthConfig,
                 pool_idle_timeout: float = 3.0) -> None:
        self.spec = spec
        self.url = spec.url
        self.id = worker_id_for(spec.url)
        _, self.host, self.port = _split_url(spec.url)
        self.host_header = f"{self.host}:{self.port}".encode()
        self.models = list(spec.models)
        self.worker_type = spec.worker_type
        self.connection_mode = spec.connection_mode
        self.labels = spec.labels
        self.priority = spec.priority
        self.cost = spec.cost
        self.api_key = spec.api_key
        self.bootstrap_port = spec.bootstrap_port
        self.runtime_type = spec.runtime_type
        self.status = WorkerStatus.PENDING
        self.breaker = CircuitBreaker(breaker)
        self.health = health
        self.health_failures = 0
        self.health_successes = 0
        self.load = 0  # in-flight requests leased by the gateway
        self.processed = 0  # selections, for the cache_aware tie-break
        self.pool = UpstreamPool(self.host, self.port, idle_timeout=pool_idle_timeout)
        # Connection-mode specific client (the gRPC channel wrapper for grpc:// workers), set by its prober.
        self.client: Any = None

    def is_available(self) -> bool:
        """Routable: Ready and the breaker allows execution."""
        return self.status is WorkerStatus.READY and self.breaker.can_execute()

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models

    def info(self) -> dict[str, Any]:
        """WorkerInfo for the admin API (api_key is write-only and never returned)."""
        return {
            "id": self.id,
            "url": self.url,
            "model_id": self.models[0] if self.models else None,
            "models": [{"id": m} for m in self.models],
            "worker_type": self.worker_type,
            "connection_mode": self.connection_mode,
            "runtime_type": self.runtime_type,
            "labels": self.labels,
            "priority": self.priority,
            "cost": self.cost,
            "bootstrap_port": self.bootstrap_port,
            "is_healthy": self.status is WorkerStatus.READY,
            "status": self.status.value,
            "load": self.load,
            "processed_requests": self.processed,
            "circuit_breaker": self.breaker.state.label,
        }
