"""W3C trace context (`traceparent`) and optional OpenTelemetry span export.

Always on, per request and cheap (one regex match, one random number): `parse_traceparent`, `new_child`
(same trace, new span id: the header the gateway forwards to the engines) and `new_root`.

Optional (`--enable-trace`, `--otlp-traces-endpoint`, default localhost:4317): `Tracer`, a thin wrapper over the
OpenTelemetry SDK that exports one span per request over OTLP/gRPC. OpenTelemetry is the optional extra
"trace" (opentelemetry-api, opentelemetry-sdk, opentelemetry-exporter-otlp-proto-grpc), imported lazily:
`create_tracer` raises `TracingUnavailableError` with the install command at startup if it is missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

# version-traceid-parentid-flags, lowercase hex only, version ff and all-zero ids invalid (W3C Trace Context
# level 1), all checked by one regex (cheaper than groups plus Python-level checks).
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
AttributeValue = str | bool | int | float


class TraceContext(NamedTuple):
    """A parsed `traceparent` (a NamedTuple: three times cheaper to build than a frozen dataclass)."""

    trace_id: str  # 32 lowercase hex, not all zeros
    span_id: str  # 16 lowercase hex, not all zeros (the caller's span: our parent)
    flags: str  # 2 lowercase hex

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 0x01)

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def _valid(value: str | bytes | None) -> str | None:
    """The first 55 characters of a valid `traceparent`, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if len(value) != 55:
        value = value.strip(" \t")
        if len(value) != 55:
            # Version 00 is exactly 55 characters; a higher version may append "-" and more fields.
            if len(value) < 55 or value.startswith("00") or value[55] != "-":
                return None
            value = value[:55]
    if _TRACEPARENT.fullmatch(value) is None:
        return None
    return value


def parse_traceparent(value: str | bytes | None) -> TraceContext | None:
    """Parse and validate a `traceparent` header value; None if absent or invalid.

    Version 00 must be exactly 55 characters. A higher version (not ff) may carry more fields after a "-"; its
    first four fields are read as version 00 (the W3C forward-compatibility rule).
    """
    valid = _valid(value)
    if valid is None:
        return None
    return TraceContext(valid[3:35], valid[36:52], valid[53:55])


# Random ids are cut from a pool of os.urandom hex (one syscall per 256 span ids): about half the cost of
# getrandbits + format per id. The pool is dropped in a forked child so worker processes never share ids.
_POOL_BYTES = 2048
_pool = ""
_pos = 0


def _drop_pool() -> None:
    global _pool, _pos
    _pool, _pos = "", 0


os.register_at_fork(after_in_child=_drop_pool)


def _random_hex(n: int) -> str:
    global _pool, _pos
    i = _pos
    if i + n > len(_pool):
        _pool = os.urandom(_POOL_BYTES).hex()
        i = 0
    _pos = i + n
    return _pool[i : i + n]


def new_span_id() -> str:
    """16 random lowercase hex characters, never all zeros."""
    span_id = _random_hex(16)
    while span_id == _ZERO_SPAN:
        span_id = _random_hex(16)
    return span_id


def new_trace_id() -> str:
    """32 random lowercase hex characters, never all zeros."""
    trace_id = _random_hex(32)
    while trace_id == _ZERO_TRACE:
        trace_id = _random_hex(32)
    return trace_id


def new_root(sampled: bool = False) -> str:
    """A `traceparent` that starts a new trace. Not sampled by default: without a tracer the gateway records
    nothing, so it should not ask the engines to record orphan spans."""
    return f"00-{new_trace_id()}-{new_span_id()}-{'01' if sampled else '00'}"


def new_child(traceparent: str | bytes | None) -> str:
    """The `traceparent` to forward: the incoming trace id and flags with a new span id; a new root if the
    incoming value is absent or invalid."""
    valid = _valid(traceparent)
    if valid is None:
        return new_root()
    return f"00-{valid[3:35]}-{new_span_id()}-{valid[53:55]}"


# --------------------------------------------------------------------------------------------- OpenTelemetry

_INSTALL_HINT = (
    "--enable-trace needs OpenTelemetry, which is not installed: pip install 'herder[trace]' "
    "(opentelemetry-api, opentelemetry-sdk, opentelemetry-exporter-otlp-proto-grpc)"
)


class TracingUnavailableError(RuntimeError):
    """Tracing was asked for but OpenTelemetry (the "trace" extra) is missing."""


class Tracer:
    """One OpenTelemetry TracerProvider of our own (the global provider is left alone) and its tracer."""

    def __init__(self, span_processor: Any, service_name: str = "herder") -> None:
        try:
            from opentelemetry import context, trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
        except ImportError as exc:
            raise TracingUnavailableError(_INSTALL_HINT) from exc
        # Kept on the instance so the per-request methods do not re-run import statements.
        self._trace = trace
        self._context = context
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(span_processor)
        self._tracer = self._provider.get_tracer("herder")

    @classmethod
    def otlp(cls, endpoint: str = "localhost:4317", service_name: str = "herder") -> Tracer:
        """Batch-export spans over OTLP/gRPC to `endpoint` (`host:port`, or a URL; plaintext unless https)."""
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise TracingUnavailableError(_INSTALL_HINT) from exc
        secure = endpoint.startswith("https://")
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not secure)
        return cls(BatchSpanProcessor(exporter), service_name)

    @classmethod
    def with_exporter(cls, exporter: Any, service_name: str = "herder") -> Tracer:
        """Export synchronously to any SpanExporter (tests use the SDK's InMemorySpanExporter)."""
        try:
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        except ImportError as exc:
            raise TracingUnavailableError(_INSTALL_HINT) from exc
        return cls(SimpleSpanProcessor(exporter), service_name)

    def start_span(
        self,
        name: str,
        traceparent: str | bytes | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Any:
        """Start a server span, child of the caller's `traceparent` (a new trace if absent or invalid)."""
        trace = self._trace
        ctx = parse_traceparent(traceparent)
        if ctx is None:
            parent = self._context.Context()  # empty: never inherit an ambient span by accident
        else:
            remote = trace.SpanContext(
                trace_id=int(ctx.trace_id, 16),
                span_id=int(ctx.span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(ctx.flags, 16)),
            )
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote), self._context.Context())
        return self._tracer.start_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=dict(attributes or {})
        )

    def end_span(
        self,
        span: Any,
        *,
        status_code: int | None = None,
        error: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Finish a span: HTTP status as `http.response.status_code`; `error` (or a 5xx) marks it failed."""
        if attributes:
            span.set_attributes(dict(attributes))
        if status_code is not None:
            span.set_attribute("http.response.status_code", status_code)
        if error is not None or (status_code is not None and status_code >= 500):
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end()

    @staticmethod
    def traceparent(span: Any) -> str:
        """The header to forward to the engines: this span as their parent."""
        sc = span.get_span_context()
        return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"

    def shutdown(self) -> None:
        """Flush and stop exporting (call at gateway shutdown)."""
        self._provider.shutdown()


def create_tracer(
    enable_trace: bool, otlp_traces_endpoint: str = "localhost:4317", service_name: str = "herder"
) -> Tracer | None:
    """The startup hook for --enable-trace: None when disabled; raises TracingUnavailableError when enabled
    without OpenTelemetry installed."""
    if not enable_trace:
        return None
    return Tracer.otlp(otlp_traces_endpoint, service_name)
