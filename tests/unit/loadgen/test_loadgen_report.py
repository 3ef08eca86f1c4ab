"""herder.loadgen.report and cli: figures, JSON round-trip, --report re-rendering, the CLI end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loadgen_fakeserver import FakeServer

from herder.loadgen import main
from herder.loadgen import plot as plot_mod
from herder.loadgen.report import Percentiles, Summary, from_json, percentile, render, summarize, to_json
from herder.loadgen.runner import RequestRecord, RunResult


def _rec(i: int, **kw: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "index": i,
        "start": 0.1 * i,
        "status": 200,
        "ok": True,
        "error": None,
        "e2e": 1.0,
        "ttft": 0.1,
        "itls": [],
        "content_events": 0,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cached_tokens": None,
        "worker": None,
        "prompt_words": 80,
    }
    base.update(kw)
    return RequestRecord(**base)


def test_percentile_interpolates() -> None:
    vals = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(vals, 50) == 3.0
    assert percentile(vals, 90) == pytest.approx(4.6)
    assert percentile(vals, 0) == 1.0 and percentile(vals, 100) == 5.0
    assert percentile([7.0], 99) == 7.0


def test_summarize_figures() -> None:
    recs = [
        _rec(0, e2e=1.0, ttft=0.1, itls=[0.01, 0.03], completion_tokens=11, cached_tokens=50, worker="a"),
        _rec(1, e2e=2.0, ttft=0.3, itls=[0.02], completion_tokens=21, cached_tokens=0, worker="b"),
        _rec(2, e2e=3.0, ttft=None, completion_tokens=None, content_events=7, prompt_tokens=60, worker="a"),
        _rec(3, ok=False, status=503, error="overloaded", worker="b"),
        _rec(4, ok=False, status=0, error="timeout"),
        _rec(5, ok=False, status=0, error="connection refused"),
        _rec(6, ok=False, status=200, error="engine died"),
        _rec(7, ok=False, status=200, error="timeout"),  # timed out mid-stream
        _rec(8, ok=False, status=200, error="connection lost (closed by peer)"),
    ]
    s = summarize(RunResult(records=recs, duration=2.0, warmup_requests=3), {"url": "u"})
    assert (s.requests, s.completed, s.failed) == (9, 3, 6)
    assert s.request_throughput == pytest.approx(1.5)
    # Output tokens: usage where reported, content events where not.
    assert s.total_completion_tokens == 11 + 21 + 7
    assert s.output_token_throughput == pytest.approx(39 / 2.0)
    assert s.total_prompt_tokens == 260 and s.input_token_throughput == pytest.approx(130.0)
    # Cache hit rate only over requests that report cached tokens.
    assert s.cached_tokens_reported == 2 and s.total_cached_tokens == 50
    assert s.cache_hit_rate == pytest.approx(50 / 200)
    assert s.ttft_ms is not None and s.ttft_ms.count == 2 and s.ttft_ms.p50 == pytest.approx(200.0)
    assert s.itl_ms is not None and s.itl_ms.count == 3 and s.itl_ms.max == pytest.approx(30.0)
    assert s.e2e_ms is not None and s.e2e_ms.mean == pytest.approx(2000.0)
    assert s.tpot_ms is not None and s.tpot_ms.count == 2
    assert s.tpot_ms.p50 == pytest.approx(((0.9 / 10) + (1.7 / 20)) / 2 * 1000)
    assert s.errors == {"503": 1, "connection": 2, "stream-error": 1, "timeout": 2}
    assert "503: overloaded" in s.error_samples
    assert s.workers == {"a": 2, "b": 2}
    assert s.warmup_requests == 3
    text = render(s)
    assert "1.50 req/s" in text and "25.0 %" in text and "503: 1" in text and "a: 2 (50.0 %)" in text


def test_summarize_without_cache_info_or_streams() -> None:
    s = summarize(RunResult(records=[_rec(0, ttft=None)], duration=1.0), {})
    assert s.cache_hit_rate is None and s.ttft_ms is None and s.itl_ms is None
    text = render(s)
    assert "cache hits  n/a" in text and "TTFT" in text


def test_empty_run() -> None:
    s = summarize(RunResult(records=[], duration=0.0), {})
    assert s.request_throughput == 0.0 and s.e2e_ms is None
    assert from_json(to_json(s)) == s
    render(s)


_finite = st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e9)


@settings(max_examples=50, deadline=None)
@given(
    vals=st.lists(_finite, min_size=6, max_size=6),
    n=st.integers(0, 10**6),
    workers=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 1000), max_size=4),
    rate=st.none() | _finite,
)
def test_json_round_trip(vals: list[float], n: int, workers: dict[str, int], rate: float | None) -> None:
    dist = Percentiles(n, *vals[:5])
    s = Summary(
        config={
            "url": "http://x",
            "workload": {"kind": "random", "extra_body": {"a": [1, 2]}},
            "run": {"rps": None},
        },
        requests=n,
        completed=n,
        duration_s=vals[5],
        request_throughput=vals[0],
        cache_hit_rate=rate,
        ttft_ms=dist,
        e2e_ms=dist,
        errors={"503": 2},
        error_samples=["503: busy"],
        workers=workers,
        target_workers=[{"url": "http://w0", "load": 3}],
    )
    back = from_json(to_json(s))
    assert back == s
    assert isinstance(back.ttft_ms, Percentiles) and back.itl_ms is None


def test_from_json_ignores_unknown_keys() -> None:
    data = orjson.loads(to_json(Summary(requests=3)))
    data["added_in_a_later_version"] = 1
    assert from_json(orjson.dumps(data)).requests == 3
    with pytest.raises(ValueError):
        from_json(b"[1, 2]")


# -- the CLI end to end ----------------------------------------------------------------------------------------


def test_cli_run_json_and_report(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    recs = tmp_path / "records.jsonl"
    argv = ["--url", fake_server.url, "--workload", "shared-prefix", "--prefix-words", "30", "--groups", "2"]
    argv += ["-n", "8", "-c", "3", "--max-tokens", "5", "--json", str(out), "--records", str(recs), "--quiet"]
    argv += ["--warmup", "2", "--seed", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = from_json(out.read_bytes())
    # The model was discovered from GET /v1/models; the config is saved without the progress flag.
    assert summary.config["workload"]["model"] == "fake-model"
    assert summary.config["workload"]["kind"] == "shared-prefix" and summary.config["run"]["concurrency"] == 3
    assert (summary.requests, summary.completed, summary.warmup_requests) == (8, 8, 2)
    measured = fake_server.responses[2:]  # the first two were warm-up (sent before the measured phase)
    assert summary.total_completion_tokens == 8 * 5
    assert summary.cache_hit_rate == pytest.approx(
        sum(a.cached_tokens for a in measured) / sum(a.prompt_tokens for a in measured)
    )
    assert sum(summary.workers.values()) == 8
    assert [w["url"] for w in summary.target_workers] == ["http://w0", "http://w1"]
    assert len(recs.read_bytes().splitlines()) == 8
    # --report re-renders the saved summary identically.
    assert main(["--report", str(out)]) == 0
    assert capsys.readouterr().out == printed == render(summary)


def test_cli_completions_no_stream(fake_server: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    argv = ["--url", fake_server.url + "/v1", "--model", "mine", "--endpoint", "completions", "--no-stream"]
    argv += ["-n", "3", "-c", "1", "--json", str(out), "-q", "--no-worker-stats", "--no-uvloop"]
    assert main(argv) == 0
    assert all(s.path == "/v1/completions" and s.body["model"] == "mine" for s in fake_server.requests)
    s = from_json(out.read_bytes())
    assert s.ttft_ms is None and s.completed == 3 and s.target_workers == []


def test_cli_all_failed_exit_code(fake_server: FakeServer) -> None:
    assert main(["--url", fake_server.url, "--model", "m", "--endpoint", "chat", "-n", "2", "-q"]) == 0
    bad = ["--url", fake_server.url + "/nope", "--model", "m", "-n", "2", "-q", "--no-worker-stats"]
    assert main(bad) == 1  # every request got a 404


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "0"],
        ["--rps", "-1"],
        ["--extra-body", "{not json"],
        ["--extra-body", "[1]"],
        ["--input-min", "9", "--input-max", "3"],
        ["--timeout", "0"],
    ],
)
def test_cli_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://127.0.0.1:9", "--model", "m", *argv]) == 2
    assert "herder bench:" in capsys.readouterr().err


def test_cli_unreachable_target_for_discovery(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--url", f"http://127.0.0.1:{port}", "-n", "1", "-q"]) == 2
    assert "--model" in capsys.readouterr().err


def test_cli_report_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--report", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_plot_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plot_mod, "available", lambda: False)
    assert main(["--url", "http://127.0.0.1:9", "--model", "m", "--plot", "x.png"]) == 2
    assert "matplotlib" in capsys.readouterr().err


@pytest.mark.skipif(not plot_mod.available(), reason="matplotlib not installed")
def test_plot_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    plot_mod.plot_latencies([_rec(i, itls=[0.01 * i]) for i in range(20)] + [_rec(99, ok=False)], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
