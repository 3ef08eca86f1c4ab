"""deploy/grafana/herder.json: valid JSON, every PromQL metric name exists in metrics.py, a sane layout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from herder.observability.metrics import GaugeFamily, HistogramFamily, Metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "herder.json"
METRIC_NAME = re.compile(r"\b(?:smg|herder)_[a-z_]+")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows nest their panels
    return out


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def _base_name(name: str, families: dict[str, Any]) -> str:
    """The family a sample name belongs to (strip _bucket/_count/_sum from histogram samples)."""
    if name in families:
        return name
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and isinstance(families.get(name[: -len(suffix)]), HistogramFamily):
            return name[: -len(suffix)]
    return name


def test_every_promql_name_is_a_defined_metric(dashboard: dict[str, Any]) -> None:
    families = Metrics().families
    exprs = _exprs(dashboard)
    assert exprs
    used = {_base_name(n, families) for e in exprs for n in METRIC_NAME.findall(e)}
    assert used, "no metric names found"
    unknown = used - set(families)
    assert not unknown, f"dashboard queries metrics that metrics.py does not define: {sorted(unknown)}"
    # Histograms are queried through their buckets, never by the bare family name.
    for e in exprs:
        for name in METRIC_NAME.findall(e):
            if isinstance(families.get(name), HistogramFamily):
                pytest.fail(f"histogram {name} used without _bucket/_count/_sum in {e!r}")


def test_dashboard_covers_the_required_signals(dashboard: dict[str, Any]) -> None:
    text = "\n".join(_exprs(dashboard))
    for needed in (
        "rate(smg_http_requests_total",
        'smg_http_responses_total{status_code=~"5.."}',
        "histogram_quantile(0.5, sum by (le) (rate(smg_http_request_duration_seconds_bucket",
        "histogram_quantile(0.9, sum by (le) (rate(smg_http_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(smg_http_request_duration_seconds_bucket",
        "smg_router_ttft_seconds_bucket",
        "smg_router_tpot_seconds_bucket",
        "smg_worker_requests_active",
        "smg_worker_cb_state",
        "smg_worker_health",
        "smg_http_rate_limit_total",
        "smg_worker_retries_total",
    ):
        assert needed in text, needed
    families = Metrics().families
    gauges_used = {n for n in METRIC_NAME.findall(text) if isinstance(families.get(n), GaugeFamily)}
    assert gauges_used  # gauges are shown directly, everything else through rate()/increase()


def test_panels_are_well_formed_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"]
    assert dashboard["uid"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in _panels(dashboard):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another"
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))
            assert all(t["expr"].strip() for t in panel["targets"])
