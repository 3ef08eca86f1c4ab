"""herder.observability.metrics: families as in SMG spec section 11, exact buckets, exposition, label bounds."""

from __future__ import annotations

import math
import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herder.observability.metrics import (
    DEFAULT_DURATION_BUCKETS,
    KNOWN_ROUTES,
    OTHER,
    CounterFamily,
    GaugeFamily,
    HistogramFamily,
    Metrics,
    get_metrics,
    route_label,
    set_metrics,
)

SPEC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 45, 60, 90, 120, 180,
                240, 300, 480, 900, 1200, 1800, 2700, 3600, 5400, 7200]  # fmt: skip

FULL = ["router_type", "backend_type", "connection_mode", "model", "endpoint"]
GEN = ["router_type", "backend_type", "model", "endpoint"]
PD = ["backend_type", "model", "runtime"]
# name -> (type, label names), transcribed from the spec (section 11) and the task brief.
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "smg_http_requests_total": ("counter", ["method", "path"]),
    "smg_http_request_duration_seconds": ("histogram", ["method", "path"]),
    "smg_http_responses_total": ("counter", ["path", "status_code", "error_code"]),
    "smg_http_connections_active": ("gauge", []),
    "smg_http_rate_limit_total": ("counter", ["result"]),
    "smg_router_requests_total": ("counter", [*FULL, "streaming"]),
    "smg_router_request_duration_seconds": ("histogram", FULL),
    "smg_router_request_errors_total": ("counter", [*FULL, "error_type"]),
    "smg_router_upstream_responses_total": ("counter", ["router_type", "status_code", "error_code"]),
    "smg_router_ttft_seconds": ("histogram", GEN),
    "smg_router_tpot_seconds": ("histogram", GEN),
    "smg_router_generation_duration_seconds": ("histogram", GEN),
    "smg_router_tokens_total": ("counter", [*GEN, "token_type"]),
    "smg_worker_pool_size": ("gauge", ["worker_type", "connection_mode", "model"]),
    "smg_worker_requests_active": ("gauge", ["worker"]),
    "smg_worker_health": ("gauge", ["worker"]),
    "smg_worker_health_checks_total": ("counter", ["worker_type", "result"]),
    "smg_worker_selection_total": ("counter", ["worker_type", "connection_mode", "model", "policy"]),
    "smg_worker_errors_total": ("counter", ["worker_type", "connection_mode", "error_type"]),
    "smg_worker_cb_state": ("gauge", ["worker"]),
    "smg_worker_cb_transitions_total": ("counter", ["worker", "from", "to"]),
    "smg_worker_cb_outcomes_total": ("counter", ["worker", "outcome"]),
    "smg_worker_cb_consecutive_failures": ("gauge", ["worker"]),
    "smg_worker_cb_consecutive_successes": ("gauge", ["worker"]),
    "smg_worker_retries_total": ("counter", ["worker_type", "endpoint"]),
    "smg_worker_retries_exhausted_total": ("counter", ["worker_type", "endpoint"]),
    "smg_worker_retry_backoff_seconds": ("histogram", ["attempt"]),
    "smg_pd_prefill_duration_seconds": ("histogram", PD),
    "smg_pd_ttft_seconds": ("histogram", PD),
    "smg_pd_kv_transfer_duration_seconds": ("histogram", PD),
    "smg_pd_bootstrap_failures_total": ("counter", []),
    "smg_pd_kv_transfer_failures_total": ("counter", []),
    "smg_mcp_tool_calls_total": ("counter", ["model", "tool_name", "result"]),
    "smg_mcp_tool_duration_seconds": ("histogram", ["model", "tool_name"]),
    "smg_mcp_servers_active": ("gauge", []),
    "smg_mcp_tool_iterations_total": ("counter", ["model"]),
    "herder_tokenizer_cache_hits_total": ("counter", ["cache"]),
    "herder_tokenizer_cache_misses_total": ("counter", ["cache"]),
}


def _exposed_name(family_name: str, family_type: str) -> str:
    # The parser strips `_total` from counter family names.
    return family_name + "_total" if family_type == "counter" else family_name


def _touch_everything(m: Metrics) -> None:
    """One update on one series of every family, so every family has samples with all its labels."""
    for family in m.families.values():
        values = [f"v_{n}" for n in family.labelnames]
        if isinstance(family, HistogramFamily):
            family.labels(*values).observe(0.3)
        else:
            family.labels(*values).inc()


def test_fresh_exposition_parses_and_has_every_family() -> None:
    text = Metrics().exposition().decode()
    parsed = {_exposed_name(f.name, f.type): f.type for f in text_string_to_metric_families(text)}
    for name, (kind, _labels) in EXPECTED.items():
        assert parsed.get(name) == kind, name


def test_families_have_the_spec_labels_and_types() -> None:
    m = Metrics()
    _touch_everything(m)
    families = {
        _exposed_name(f.name, f.type): f for f in text_string_to_metric_families(m.exposition().decode())
    }
    for name, (kind, labels) in EXPECTED.items():
        family = families[name]
        assert family.type == kind
        assert family.samples, name
        for sample in family.samples:
            assert sorted(k for k in sample.labels if k != "le") == sorted(labels), name


def test_every_histogram_has_the_spec_buckets_exactly() -> None:
    m = Metrics()
    _touch_everything(m)
    histograms = [f for f in text_string_to_metric_families(m.exposition().decode()) if f.type == "histogram"]
    assert {f.name for f in histograms} >= {n for n, (k, _) in EXPECTED.items() if k == "histogram"}
    for family in histograms:
        les = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
        assert [float(x) for x in les] == [*SPEC_BUCKETS, math.inf], family.name
    assert list(DEFAULT_DURATION_BUCKETS) == SPEC_BUCKETS


def test_every_family_defined_once_in_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.http_requests.labels("GET", "/health").inc()
    assert b.http_requests.labels("GET", "/health").value == 0.0
    assert a.registry is not b.registry
    with pytest.raises(ValueError, match="defined twice"):
        a._counter("smg_http_requests_total", "again", ("method", "path"))


def test_default_instance_accessor() -> None:
    first = get_metrics()
    assert get_metrics() is first
    custom = Metrics(duration_buckets=[0.1, 1, 10])
    set_metrics(custom)
    try:
        assert get_metrics() is custom
        assert custom.router_ttft.bounds == (0.1, 1.0, 10.0)
    finally:
        set_metrics(first)


@pytest.mark.parametrize("bad", [[], [1, 1], [2, 1], [0.1, math.nan], [math.inf]])
def test_bad_buckets_rejected(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        Metrics(duration_buckets=bad)


def test_trailing_inf_bucket_is_implicit() -> None:
    assert Metrics(duration_buckets=[1, 2, math.inf]).router_tpot.bounds == (1.0, 2.0)


def test_labels_are_validated() -> None:
    m = Metrics()
    with pytest.raises(ValueError):
        m.http_requests.labels("GET")
    with pytest.raises(TypeError):
        m.http_responses.labels("/x", 200, "")  # type: ignore[arg-type]


@given(st.lists(st.floats(min_value=0, max_value=20000, allow_nan=False), max_size=60))
def test_histogram_counts_match_le_semantics(values: list[float]) -> None:
    family = HistogramFamily("h_seconds", "h", ("a",), DEFAULT_DURATION_BUCKETS)
    child = family.labels("x")
    for v in [*values, *SPEC_BUCKETS]:  # include values exactly on the bounds (le is inclusive)
        child.observe(v)
    all_values = [*values, *SPEC_BUCKETS]
    (metric,) = family.collect()
    buckets = {s.labels["le"]: s.value for s in metric.samples if s.name == "h_seconds_bucket"}
    for bound in SPEC_BUCKETS:
        le = next(k for k in buckets if k != "+Inf" and float(k) == bound)
        assert buckets[le] == sum(1 for v in all_values if v <= bound)
    assert buckets["+Inf"] == len(all_values)
    count = next(s.value for s in metric.samples if s.name == "h_seconds_count")
    total = next(s.value for s in metric.samples if s.name == "h_seconds_sum")
    assert count == len(all_values)
    assert total == pytest.approx(sum(all_values))


def test_exposition_matches_prometheus_client() -> None:
    """Same observations, same text as prometheus_client's own classes (which add `_created` series)."""
    reference = CollectorRegistry()
    rc = Counter("x_requests_total", "Requests", ["method", "path"], registry=reference)
    rg = Gauge("x_active", "Active", registry=reference)
    rh = Histogram(
        "x_duration_seconds", "Duration", ["path"], buckets=DEFAULT_DURATION_BUCKETS, registry=reference
    )
    ours = CollectorRegistry()
    oc = CounterFamily("x_requests_total", "Requests", ("method", "path"))
    og = GaugeFamily("x_active", "Active")
    oh = HistogramFamily("x_duration_seconds", "Duration", ("path",), DEFAULT_DURATION_BUCKETS)
    for family in (oc, og, oh):
        ours.register(family)
    rng = random.Random(3)
    for _ in range(500):
        method, path = rng.choice(["GET", "POST"]), rng.choice(["/a", "/b", 'q"\\x'])
        value = 10 ** rng.uniform(-4, 4)
        rc.labels(method, path).inc()
        oc.labels(method, path).inc()
        rh.labels(path).observe(value)
        oh.labels(path).observe(value)
        rg.inc(value)
        og.child.inc(value)
    expected = [ln for ln in generate_latest(reference).decode().splitlines() if "_created" not in ln]
    assert generate_latest(ours).decode().splitlines() == expected


def test_route_label_known_templates_and_other() -> None:
    for route in KNOWN_ROUTES:
        concrete = (
            route.replace("{id}", "abc123").replace("{item_id}", "it_9").replace("{module_uuid}", "u-1")
        )
        assert route_label(concrete) == route
        assert route_label(concrete + "?x=1") == route
    assert route_label("/workers/") == OTHER  # an empty id is not a worker id
    assert route_label("/workers/a/b") == OTHER
    assert route_label("/v1/chat/completions/") == OTHER
    assert route_label("") == OTHER
    assert route_label("/../../etc/passwd") == OTHER


def test_thousand_random_paths_give_a_bounded_label_set() -> None:
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "/-_.%?="
    prefixes = ["", "/v1/", "/workers/", "/v1/responses/", "/v1/conversations/", "/wasm/"]
    labels = {
        route_label(rng.choice(prefixes) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))
        for _ in range(1000)
    }
    assert labels <= {*KNOWN_ROUTES, OTHER}
    assert len(labels) <= len(KNOWN_ROUTES) + 1


@given(st.text(max_size=80))
def test_route_label_is_always_bounded(path: str) -> None:
    assert route_label(path) in {*KNOWN_ROUTES, OTHER}


def test_http_request_bundle_updates_the_right_series() -> None:
    m = Metrics()
    b = m.http_request("POST", "/v1/chat/completions")
    assert m.http_request("POST", "/v1/chat/completions") is b
    assert m.http_request(b"POST", "/v1/chat/completions").count is b.count  # the parser's bytes work too
    b.count.inc()
    b.record(200, "", 0.02)
    b.record(503, "no_available_workers", 1.5)
    b.record(503, "no_available_workers", 2.0)
    assert m.http_requests.labels("POST", "/v1/chat/completions").value == 1
    assert m.http_request_duration.labels("POST", "/v1/chat/completions").count == 3
    assert m.http_responses.labels("/v1/chat/completions", "200", "").value == 1
    assert m.http_responses.labels("/v1/chat/completions", "503", "no_available_workers").value == 2


def test_http_bundles_fold_unknown_methods_and_excess_paths() -> None:
    m = Metrics(max_label_sets=16)
    rng = random.Random(5)
    for _ in range(1000):
        path = "/" + "".join(rng.choice(string.ascii_lowercase) for _ in range(12))
        m.http_request(rng.choice(["GET", "POST", "BREW", "get"]), path).count.inc()
    series = m.http_requests.series()
    assert len(series) <= 16 + 3  # the cap, plus one "other" per normalised method (GET, POST, OTHER)
    assert {method for method, _ in series} <= {"GET", "POST", "OTHER"}
    assert sum(c.value for c in series.values()) == 1000
    assert len(m._http) <= 16 + 1 + 3  # one alias may land on the last free slot
    assert ("GET", OTHER) in series


def test_response_series_are_bounded_per_route() -> None:
    m = Metrics()
    b = m.http_request("GET", "/health")
    for i in range(2000):
        b.response(200 + i % 400, f"code_{i}").inc()
    b.response(1234, "").inc()  # an impossible status folds into 0
    series = m.http_responses.series()
    # Status codes stay exact (at most 500 values, plus 0 for impossible ones); error codes fold into "other"
    # once a route has 128 (status, error_code) pairs.
    assert len(series) <= 128 + 501
    assert len({code for _, _, code in series}) <= 128 + 1
    assert ("/health", "0", "other") in series
    assert sum(c.value for c in m.http_responses.series().values()) == 2001


def test_router_bundle_and_model_folding() -> None:
    m = Metrics(max_label_sets=8)
    r = m.router("llama", "chat", True)
    assert m.router("llama", "chat", True) is r
    r.requests.inc()
    r.duration.observe(0.5)
    r.ttft.observe(0.05)
    r.tpot.observe(0.01)
    r.generation_duration.observe(0.4)
    r.input_tokens.inc(100)
    r.output_tokens.inc(7)
    r.error("upstream_timeout").inc()
    full = ("http", "regular", "http", "llama", "chat")
    gen = ("http", "regular", "llama", "chat")
    assert m.router_requests.labels(*full, "true").value == 1
    assert m.router_request_duration.labels(*full).count == 1
    assert m.router_ttft.labels(*gen).count == 1
    assert m.router_tokens.labels(*gen, "input").value == 100
    assert m.router_tokens.labels(*gen, "output").value == 7
    assert m.router_request_errors.labels(*full, "upstream_timeout").value == 1
    g = m.router("m2", "generate", False, router_type="grpc", backend_type="pd", connection_mode="grpc")
    g.requests.inc()
    assert m.router_requests.labels("grpc", "pd", "grpc", "m2", "generate", "false").value == 1
    for i in range(100):
        m.router(f"client-model-{i}", "chat", False).requests.inc()
    models = {labels[3] for labels in m.router_requests.series()}
    assert len(models) <= 8 + 1
    assert OTHER in models


def test_worker_bundle_and_removal() -> None:
    m = Metrics()
    w = m.worker("http://w1:8000")
    w.requests_active.inc()
    w.health.set(1)
    w.cb_state.set(1)
    w.cb_outcome("failure").inc()
    w.cb_transition("closed", "open").inc()
    m.engine["running_requests"].labels("http://w1:8000").set(3)
    m.worker("http://w2:8000").requests_active.inc()
    assert m.worker_cb_transitions.labels("http://w1:8000", "closed", "open").value == 1
    m.remove_worker("http://w1:8000")
    text = m.exposition().decode()
    assert "http://w1:8000" not in text
    assert 'smg_worker_requests_active{worker="http://w2:8000"} 1.0' in text


def test_tokenizer_cache_counters() -> None:
    m = Metrics()
    m.tokenizer_cache_l0.hits.inc()
    m.tokenizer_cache_l1.misses.inc(2)
    text = m.exposition().decode()
    assert 'herder_tokenizer_cache_hits_total{cache="l0"} 1.0' in text
    assert 'herder_tokenizer_cache_misses_total{cache="l1"} 2.0' in text


def test_counter_names_must_end_in_total() -> None:
    with pytest.raises(ValueError, match="_total"):
        CounterFamily("smg_db_items_stored", "no suffix")


def test_fast_exposition_is_byte_identical_to_generate_latest() -> None:
    m = Metrics()
    tricky = ['a"b', "back\\slash", "new\nline", "ünïcode ✓", "", "{x=1}"]
    for i, value in enumerate(tricky):
        m.router(value, "chat", bool(i % 2)).requests.inc(i + 0.5)
        m.router(value, "chat", False).ttft.observe(10**i / 1000)
        m.worker(value).requests_active.set(-i)
    m.http_requests.labels("GET", "/big").inc(12_345_678.9)  # Go-style exponent formatting from 1e6 up
    m.worker_retry_backoff.labels("1").counts[3] = 2_000_000
    m.engine["token_usage"].labels("w").set(math.nan)
    m.engine["gen_throughput"].labels("w").set(math.inf)
    m.engine["cache_hit_rate"].labels("w").set(1e-9)
    assert m.exposition() == generate_latest(m.registry)
    m.remove_worker('a"b')  # cached line prefixes are dropped with their series
    m.worker('a"b').health.set(1)
    assert m.exposition() == generate_latest(m.registry)


@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True, width=64)),
        max_size=15,
    )
)
def test_fast_exposition_identical_for_any_labels_and_values(rows: list[tuple[str, float]]) -> None:
    m = Metrics()
    for label, value in rows:
        m.worker_cb_consecutive_failures.labels(label).set(value)
        m.worker_retries.labels(label, "chat").inc(abs(value) if not math.isnan(value) else 1.0)
        if math.isfinite(value):
            m.mcp_tool_duration.labels(label, "search").observe(abs(value))
    assert m.exposition() == generate_latest(m.registry)
