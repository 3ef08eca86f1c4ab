"""herder.observability: every metric (one file), the /metrics listener, logging setup, trace context.

The request path uses: `get_metrics()` bundles (`http_request`, `router`, `worker`), `route_label`,
`set_request_id`/`reset_request_id`, `ACCESS_LOG`, and `new_child` for the forwarded `traceparent`.
"""

from herder.observability.logging import (
    ACCESS_LOG,
    AccessLog,
    JsonFormatter,
    RequestIdFilter,
    request_id_var,
    reset_request_id,
    set_request_id,
    setup_logging,
)
from herder.observability.metrics import (
    DEFAULT_DURATION_BUCKETS,
    HttpRequestMetrics,
    Metrics,
    RouterMetrics,
    WorkerMetrics,
    get_metrics,
    route_label,
    set_metrics,
)
from herder.observability.metrics_server import (
    MultiProcessCollector,
    SnapshotWriter,
    prepare_multiprocess_dir,
    start_metrics_server,
)
from herder.observability.tracing import (
    TraceContext,
    Tracer,
    TracingUnavailableError,
    create_tracer,
    new_child,
    new_root,
    parse_traceparent,
)

__all__ = [
    "ACCESS_LOG",
    "DEFAULT_DURATION_BUCKETS",
    "AccessLog",
    "HttpRequestMetrics",
    "JsonFormatter",
    "Metrics",
    "MultiProcessCollector",
    "RequestIdFilter",
    "RouterMetrics",
    "SnapshotWriter",
    "TraceContext",
    "Tracer",
    "TracingUnavailableError",
    "WorkerMetrics",
    "create_tracer",
    "get_metrics",
    "new_child",
    "new_root",
    "parse_traceparent",
    "prepare_multiprocess_dir",
    "request_id_var",
    "reset_request_id",
    "route_label",
    "set_metrics",
    "set_request_id",
    "setup_logging",
    "start_metrics_server",
]
