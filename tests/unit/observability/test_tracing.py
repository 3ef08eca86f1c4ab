"""W3C traceparent parsing, child/root generation, and the optional OpenTelemetry Tracer."""

from __future__ import annotations

import importlib.util
import multiprocessing
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.observability.tracing import (
    TraceContext,
    Tracer,
    TracingUnavailableError,
    create_tracer,
    new_child,
    new_root,
    new_span_id,
    parse_traceparent,
)

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SHAPE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def test_parse_valid() -> None:
    ctx = parse_traceparent(VALID)
    assert ctx == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert ctx.sampled
    assert ctx.header == VALID
    assert parse_traceparent(VALID.encode()) == ctx
    assert parse_traceparent(f" {VALID}\t") == ctx
    assert not parse_traceparent(VALID[:-2] + "00").sampled  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        VALID.upper(),  # hex must be lowercase
        VALID[:-1],  # too short
        VALID + "0",  # version 00 is exactly 55 characters
        VALID + "-extra",  # ... even with more fields
        "ff" + VALID[2:],  # version ff is invalid
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # wrong separator
        "00-4bf92f3577b34da6a3ce929d0e0e47-3600f067aa0ba902b7-01",  # separator misplaced
        "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    ],
)
def test_parse_invalid(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_future_version_is_read_forward_compatibly() -> None:
    future = "01" + VALID[2:] + "-whatever-comes-next"
    assert parse_traceparent(future) == parse_traceparent(VALID)
    assert parse_traceparent("01" + VALID[2:]) == parse_traceparent(VALID)
    assert parse_traceparent("01" + VALID[2:] + "x") is None  # more fields must follow a "-"


def test_new_child_keeps_trace_and_flags_with_a_new_span() -> None:
    parent = parse_traceparent(VALID)
    assert parent is not None
    spans = set()
    for _ in range(200):
        child = parse_traceparent(new_child(VALID))
        assert child is not None
        assert child.trace_id == parent.trace_id
        assert child.flags == parent.flags
        assert child.span_id != parent.span_id
        spans.add(child.span_id)
    assert len(spans) == 200


def test_new_child_of_nothing_or_garbage_is_a_new_root() -> None:
    traces = set()
    for incoming in (None, "", "garbage", VALID.upper()):
        out = new_child(incoming)
        assert SHAPE.fullmatch(out)
        ctx = parse_traceparent(out)
        assert ctx is not None
        assert ctx.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
        traces.add(ctx.trace_id)
    assert len(traces) == 4


def test_new_root() -> None:
    roots = [parse_traceparent(new_root()) for _ in range(500)]
    assert all(r is not None and not r.sampled for r in roots)
    assert len({r.trace_id for r in roots if r}) == 500
    sampled = parse_traceparent(new_root(sampled=True))
    assert sampled is not None
    assert sampled.sampled


@given(st.one_of(st.none(), st.text(max_size=80), st.binary(max_size=80)))
def test_new_child_is_always_valid(value: str | bytes | None) -> None:
    out = new_child(value)
    assert SHAPE.fullmatch(out)
    assert parse_traceparent(out) is not None


def _child_span_id(conn: multiprocessing.connection.Connection) -> None:
    conn.send(new_span_id())


def test_forked_processes_do_not_share_span_ids() -> None:
    new_span_id()  # fill this process's id pool before forking
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_child_span_id, args=(child_end,))
    proc.start()
    from_child = parent_end.recv()
    proc.join(30)
    assert from_child != new_span_id()


# --------------------------------------------------------------------------------------------- OpenTelemetry


def test_create_tracer_disabled_is_none() -> None:
    assert create_tracer(False) is None


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry") is not None
    and importlib.util.find_spec("opentelemetry.exporter") is not None,
    reason="the OTLP exporter is installed",
)
def test_create_tracer_without_the_extra_fails_clearly() -> None:
    with pytest.raises(TracingUnavailableError, match=r"pip install 'herder\[trace\]'"):
        create_tracer(True, "localhost:4317")


def test_tracer_exports_spans_in_memory() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="needs `pip install opentelemetry-sdk`")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    tracer = Tracer.with_exporter(exporter, service_name="herder-test")
    span = tracer.start_span("POST /v1/chat/completions", VALID, {"gen_ai.request.model": "llama"})
    forwarded = parse_traceparent(tracer.traceparent(span))
    tracer.end_span(span, status_code=503, error="no_available_workers", attributes={"herder.retries": 2})
    root = tracer.start_span("GET /v1/models", None)
    tracer.end_span(root, status_code=200)
    tracer.shutdown()

    first, second = exporter.get_finished_spans()
    assert first.name == "POST /v1/chat/completions"
    assert first.kind == SpanKind.SERVER
    assert f"{first.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first.parent is not None
    assert f"{first.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes is not None
    assert first.attributes["gen_ai.request.model"] == "llama"
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["herder.retries"] == 2
    assert first.resource.attributes["service.name"] == "herder-test"
    # What the gateway forwards to the engine names this span as the parent.
    assert forwarded is not None
    assert forwarded.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert forwarded.span_id == f"{first.context.span_id:016x}"
    # No valid traceparent: a new trace, no parent, not an error.
    assert second.parent is None
    assert second.context.trace_id != first.context.trace_id
    assert second.status.status_code != StatusCode.ERROR


def test_unsampled_parent_is_not_recorded() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="needs `pip install opentelemetry-sdk`")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer = Tracer.with_exporter(exporter)
    span = tracer.start_span("x", VALID[:-2] + "00")
    tracer.end_span(span, status_code=200)
    assert exporter.get_finished_spans() == ()
