"""Metrics from a real scrape of /metrics, trace-context propagation, and spans with --enable-trace."""

from __future__ import annotations

import random
import string

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herder.server.http import HttpServer, Reply, Request
from herder.sim.fleet import SimFleet
from tests.conftest import GatewayFactory


async def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def total(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return sum(v for k, v in samples.get(name, {}).items() if all((lk, lv) in k for lk, lv in labels.items()))


async def test_exact_counters_for_a_known_mix(make_gateway: GatewayFactory) -> None:
    n_plain, m_stream, k_err = 7, 5, 3
    async with SimFleet(n=2) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, metrics_port=0, policy="round_robin")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for i in range(n_plain):
                r = await client.post("/v1/chat/completions", json={
                    "model": "sim-model", "messages": [{"role": "user", "content": f"a{i}"}], "max_tokens": 4})
                assert r.status_code == 200
            for i in range(m_stream):
                r = await client.post("/v1/chat/completions", json={
                    "model": "sim-model", "messages": [{"role": "user", "content": f"b{i}"}], "max_tokens": 6,
                    "stream": True, "stream_options": {"include_usage": True}})
                assert r.status_code == 200 and "[DONE]" in r.text
            for _ in range(k_err):
                r = await client.post("/v1/chat/completions", json={
                    "model": "nope", "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 404
        s = await scrape(gw.metrics_port)
    route = "/v1/chat/completions"
    assert total(s, "smg_http_requests_total", path=route, method="POST") == n_plain + m_stream + k_err
    assert total(s, "smg_http_responses_total", path=route, status_code="200") == n_plain + m_stream
    assert total(s, "smg_http_responses_total", path=route, status_code="404",
                 error_code="model_not_found") == k_err
    assert total(s, "smg_http_request_duration_seconds_count", path=route) == n_plain + m_stream + k_err
    assert total(s, "smg_router_requests_total", endpoint="chat", streaming="false", model="sim-model") == n_plain
    assert total(s, "smg_router_requests_total", endpoint="chat", streaming="true", model="sim-model") == m_stream
    assert total(s, "smg_router_request_errors_total", error_type="model_not_found") == k_err
    assert total(s, "smg_router_ttft_seconds_count") == m_stream
    assert total(s, "smg_router_tpot_seconds_count") == m_stream
    assert total(s, "smg_router_tokens_total", token_type="output") == n_plain * 4 + m_stream * 6
    assert total(s, "smg_worker_selection_total", policy="round_robin") == n_plain + m_stream
    assert total(s, "smg_router_upstream_responses_total", status_code="200") == n_plain + m_stream
    assert total(s, "smg_worker_pool_size", model="sim-model") == 2
    assert total(s, "smg_worker_requests_active") == 0
    assert total(s, "smg_worker_health") == 2
    assert total(s, "smg_worker_cb_state") == 0
    assert total(s, "smg_worker_cb_outcomes_total", outcome="success") == n_plain + m_stream


async def test_path_labels_stay_bounded(make_gateway: GatewayFactory) -> None:
    rng = random.Random(5)
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls, metrics_port=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            for _ in range(1000):
                path = "/" + "/".join("".join(rng.choices(string.ascii_lowercase, k=5)) for _ in range(3))
                assert (await client.get(path)).status_code == 404
            await client.get("/workers/abc123")
        s = await scrape(gw.metrics_port)
    paths = {dict(k)["path"] for k in s["smg_http_requests_total"]}
    assert len(paths) <= 4, paths
    assert "other" in paths


async def test_traceparent_reaches_the_worker() -> None:
    seen: list[dict[bytes, bytes]] = []

    async def worker(req: Request, reply: Reply) -> None:
        if req.path == "/v1/chat/completions":
            seen.append(dict(req.headers))
        if req.path == "/v1/models":
            reply.send(200, b'{"object":"list","data":[{"id":"m"}]}')
        else:
            reply.send(200, b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}')

    server = HttpServer(worker)
    await server.start("127.0.0.1", 0)
    from herder.config import GatewayConfig
    from herder.server.app import Gateway

    gw = Gateway(GatewayConfig(host="127.0.0.1", port=0, worker_urls=[f"http://127.0.0.1:{server.port}"],
                               prometheus_port=0))
    await gw.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            await client.post("/v1/chat/completions", json=body, headers={"traceparent": tp, "tracestate": "a=b"})
            await client.post("/v1/chat/completions", json=body)
        assert seen[0][b"traceparent"].decode().split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert seen[0][b"tracestate"] == b"a=b"
        started = seen[1][b"traceparent"].decode().split("-")
        assert len(started) == 4 and len(started[1]) == 32 and started[1] != "0" * 32
        assert seen[0][b"x-request-id"].startswith(b"chatcmpl-")
    finally:
        await gw.stop()
        await server.stop()


async def test_spans_exported_with_enable_trace(make_gateway: GatewayFactory) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from herder.observability.tracing import Tracer

    exporter = InMemorySpanExporter()
    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        gw.tracer = Tracer.with_exporter(exporter)
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            r = await client.post("/v1/chat/completions", headers={"traceparent": tp}, json={
                "model": "sim-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
            assert r.status_code == 200
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    span = spans[0]
    assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert span.attributes["http.response.status_code"] == 200


async def test_access_log_lines_for_proxied_and_handled_requests(make_gateway: GatewayFactory,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """One access-log line per request, the same shape whether the request was proxied without a task (recorded
    with the deferred metrics) or handled in a task (admin, errors): client path, status, the response's id."""
    from herder.observability.logging import ACCESS_LOG

    async with SimFleet(n=1) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        ACCESS_LOG.enabled = True
        try:
            with caplog.at_level("INFO", logger="herder.access"):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
                    chat = await client.post("/v1/chat/completions", json={
                        "model": "sim-model", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
                    bad = await client.post("/v1/chat/completions", content=b"{not json")
                    listing = await client.get("/workers")
                gw.telemetry.flush()
        finally:
            ACCESS_LOG.enabled = False
    lines = {(r.method, r.path, r.status): r.request_id for r in caplog.records if r.name == "herder.access"}
    assert lines[("POST", "/v1/chat/completions", 200)] == chat.headers["x-request-id"]
    assert lines[("POST", "/v1/chat/completions", 400)] == bad.headers["x-request-id"]
    assert lines[("GET", "/workers", 200)] == listing.headers["x-request-id"]
