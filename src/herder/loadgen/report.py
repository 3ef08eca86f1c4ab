"""Summaries of a bench run: figures from per-request records, a text table, and JSON that round-trips.

`summarize(run, config)` builds a `Summary`; `render(summary)` gives the table; `to_json` / `from_json` save
and load it (`Summary.from_dict(summary.to_dict()) == summary`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from herder.loadgen.runner import RequestRecord, RunResult

__all__ = [
    "SUMMARY_VERSION",
    "Percentiles",
    "Summary",
    "from_json",
    "percentile",
    "render",
    "summarize",
    "to_json",
]

SUMMARY_VERSION = 1
_ERROR_SAMPLES = 5


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of sorted values, linearly interpolated (numpy's default)."""
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass(slots=True)
class Percentiles:
    """Distribution of one latency, in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of_seconds(cls, values: list[float]) -> Percentiles | None:
        if not values:
            return None
        ms = sorted(v * 1000.0 for v in values)
        return cls(
            count=len(ms),
            mean=sum(ms) / len(ms),
            p50=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            max=ms[-1],
        )


@dataclass(slots=True)
class Summary:
    """Every figure of a run plus the configuration that produced it."""

    config: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    completed: int = 0
    failed: int = 0
    duration_s: float = 0.0
    request_throughput: float = 0.0
    output_token_throughput: float = 0.0
    input_token_throughput: float = 0.0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    total_cached_tokens: int = 0
    cached_tokens_reported: int = 0
    cache_hit_rate: float | None = None
    ttft_ms: Percentiles | None = None
    itl_ms: Percentiles | None = None
    tpot_ms: Percentiles | None = None
    e2e_ms: Percentiles | None = None
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    workers: dict[str, int] = field(default_factory=dict)
    target_workers: list[dict[str, Any]] = field(default_factory=list)
    warmup_requests: int = 0
    connections_opened: int = 0
    version: int = SUMMARY_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Inverse of `to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for name in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
            value = kwargs.get(name)
            if isinstance(value, dict):
                kwargs[name] = Percentiles(**value)
        return cls(**kwargs)


def to_json(summary: Summary) -> bytes:
    """Indented JSON of a summary (NaN never appears: empty distributions are null)."""
    return orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def from_json(data: bytes | str) -> Summary:
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a herder bench summary (expected a JSON object)")
    return Summary.from_dict(obj)


def _error_key(rec: RequestRecord) -> str:
    """Error class: the HTTP status, or timeout / connection / stream-error (a 2xx that failed midway)."""
    if rec.error == "timeout":
        return "timeout"
    if rec.status == 0 or (rec.error or "").startswith(("connection lost", "bad HTTP response")):
        return "connection"
    if 200 <= rec.status < 300:
        return "stream-error"
    return str(rec.status)


def summarize(
    run: RunResult, config: dict[str, Any], target_workers: list[dict[str, Any]] | None = None
) -> Summary:
    """Aggregate a run's records. Output tokens fall back to content events when usage is missing."""
    recs = run.records
    ok = [r for r in recs if r.ok]
    bad = [r for r in recs if not r.ok]
    dur = run.duration if run.duration > 0 else math.nan
    prompt = sum(r.prompt_tokens or 0 for r in ok)
    output = sum(r.completion_tokens if r.completion_tokens is not None else r.content_events for r in ok)
    # Cache-hit rate only over requests that report both counts, so a missing field does not read as a miss.
    with_cache = [r for r in ok if r.cached_tokens is not None and r.prompt_tokens]
    cached = sum(r.cached_tokens or 0 for r in with_cache)
    cache_prompt = sum(r.prompt_tokens or 0 for r in with_cache)
    tpot = [
        (r.e2e - r.ttft) / (r.completion_tokens - 1)
        for r in ok
        if r.ttft is not None and r.completion_tokens is not None and r.completion_tokens > 1
    ]
    errors = Counter(_error_key(r) for r in bad)
    samples: list[str] = []
    for r in bad:
        text = f"{_error_key(r)}: {r.error or 'no detail'}"
        if text not in samples:
            samples.append(text)
        if len(samples) >= _ERROR_SAMPLES:
            break
    workers = Counter(r.worker for r in recs if r.worker)

    def rate(x: float) -> float:
        v = x / dur
        return 0.0 if math.isnan(v) else v

    return Summary(
        config=config,
        requests=len(recs),
        completed=len(ok),
        failed=len(bad),
        duration_s=run.duration,
        request_throughput=rate(len(ok)),
        output_token_throughput=rate(output),
        input_token_throughput=rate(prompt),
        total_prompt_tokens=prompt,
        total_completion_tokens=output,
        total_cached_tokens=cached,
        cached_tokens_reported=len(with_cache),
        cache_hit_rate=(cached / cache_prompt) if cache_prompt else None,
        ttft_ms=Percentiles.of_seconds([r.ttft for r in ok if r.ttft is not None]),
        itl_ms=Percentiles.of_seconds([x for r in ok for x in r.itls]),
        tpot_ms=Percentiles.of_seconds(tpot),
        e2e_ms=Percentiles.of_seconds([r.e2e for r in ok]),
        errors=dict(sorted(errors.items())),
        error_samples=samples,
        workers=dict(sorted(workers.items(), key=lambda kv: (-kv[1], kv[0]))),
        target_workers=target_workers or [],
        warmup_requests=run.warmup_requests,
        connections_opened=run.connections_opened,
    )


def _fmt(v: float) -> str:
    return f"{v:9.1f}" if v < 100_000 else f"{v:9.0f}"


def render(s: Summary) -> str:
    """The summary as a plain-text table."""
    c = s.config
    wl = c.get("workload", {}) if isinstance(c.get("workload"), dict) else {}
    run = c.get("run", {}) if isinstance(c.get("run"), dict) else {}
    mode = f"rps={run.get('rps')}" if run.get("rps") else f"concurrency={run.get('concurrency', '?')}"
    lines = [
        f"herder bench: {wl.get('kind', '?')} on {wl.get('endpoint', '?')}"
        f" ({'stream' if wl.get('stream') else 'no stream'}), {mode}",
        f"target      {c.get('url', '?')}  model={wl.get('model', '?')}  max_tokens={wl.get('max_tokens', '?')}",
        f"requests    {s.completed} ok, {s.failed} failed, in {s.duration_s:.2f} s"
        + (f" (after {s.warmup_requests} warm-up)" if s.warmup_requests else "")
        + (" (interrupted)" if c.get("interrupted") else ""),
        f"throughput  {s.request_throughput:.2f} req/s, {s.output_token_throughput:.1f} output tok/s, "
        f"{s.input_token_throughput:.1f} input tok/s",
        "",
        f"{'latency (ms)':<12}{'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9} {'n':>8}",
    ]
    for label, dist in (("TTFT", s.ttft_ms), ("ITL", s.itl_ms), ("TPOT", s.tpot_ms), ("E2E", s.e2e_ms)):
        if dist is None:
            lines.append(f"{label:<12}{'n/a':>9}")
        else:
            vals = " ".join(_fmt(v) for v in (dist.mean, dist.p50, dist.p90, dist.p99, dist.max))
            lines.append(f"{label:<12}{vals} {dist.count:>8}")
    lines.append("")
    if s.cache_hit_rate is None:
        lines.append("cache hits  n/a (the target reports no usage.prompt_tokens_details.cached_tokens)")
    else:
        lines.append(
            f"cache hits  {s.cache_hit_rate * 100:.1f} % ({s.total_cached_tokens} cached tokens, "
            f"{s.cached_tokens_reported} requests reporting)"
        )
    if s.errors:
        lines.append("errors      " + ", ".join(f"{k}: {v}" for k, v in s.errors.items()))
        lines.extend(f"            {e}" for e in s.error_samples)
    if s.workers:
        total = sum(s.workers.values())
        lines.append("workers     (from response headers)")
        lines.extend(f"            {w}: {n} ({n * 100 / total:.1f} %)" for w, n in s.workers.items())
    elif s.target_workers:
        urls = ", ".join(str(w.get("url", "?")) for w in s.target_workers)
        lines.append(f"workers     {urls} (the target does not name the serving worker per response)")
    return "\n".join(lines) + "\n"
