"""The Prometheus listener (`--prometheus-host`/`--prometheus-port`, default 29000) and multi-process aggregation.

The listener is a tiny `asyncio.Protocol` on the gateway's own event loop (no thread, no web framework): GET or
HEAD `/metrics` answers the text exposition (content type negotiated by prometheus_client's `choose_encoder`,
so an OpenMetrics `Accept` gets OpenMetrics); any other path is 404, another method on `/metrics` is 405.
Keep-alive and pipelining are supported; a request with a body is answered and the connection closed.

Multi-process (`--workers N`, SO_REUSEPORT): every process owns its own `Metrics`, so a scrape must see the sum.
Design chosen: snapshot files. Each worker process runs a `SnapshotWriter` that every `interval` seconds (and
once more when stopped) writes all its series to `<dir>/<pid>.metrics.json` (write + atomic rename). The process
that serves the port (the supervisor, or worker 0) exposes a `MultiProcessCollector(dir)`, which on every scrape
merges the files: counters and histograms add up (a dead process's final counts stay, so totals never go
backwards); gauges come only from live processes and combine by the family's mode (`sum` for in-flight counts,
`max`/`min` for per-process copies of the same fact, e.g. pool size, breaker state, health). Why this rather than
prometheus_client's multiprocess mode: that mode replaces every value with an mmap-backed, locked one (slower
hot path, and no custom collectors), while snapshots cost the hot path nothing; the price is up to `interval`
of staleness per worker, well under a 15 s scrape interval. The supervisor should call
`prepare_multiprocess_dir` (a tmpfs path such as a `tempfile.mkdtemp()` under /dev/shm is ideal) once before
starting the workers, so a restarted gateway starts from zero, and should reap exited workers (a zombie's pid
still looks alive, so its gauges would linger). Serving the port from the supervisor keeps the merge (~7 ms for
4 busy processes) off the workers' event loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from operator import add
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from herder.observability.metrics import (
    DEFAULT_DURATION_BUCKETS,
    GaugeFamily,
    HistogramChild,
    HistogramFamily,
    Metrics,
)

Snapshot = dict[str, list[list[Any]]]  # family name -> [[label values, value or [*bucket counts, sum]], ...]
SNAPSHOT_SUFFIX = ".metrics.json"
_log = logging.getLogger(__name__)
_MAX_HEADER_BYTES = 16 * 1024
_IDLE_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------------- listener


class ExpositionSource(Protocol):
    """What the listener serves: a `Metrics` or a `MultiProcessCollector`."""

    def exposition(self) -> bytes: ...

    def collect(self) -> Iterable[Metric]: ...


class _MetricsProtocol(asyncio.Protocol):
    def __init__(self, source: ExpositionSource) -> None:
        self._source = source
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._transport = None

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(_IDLE_TIMEOUT_S, self._close)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._arm_idle()
        while self._transport is not None and not self._transport.is_closing():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEADER_BYTES:
                    self._reply(431, b"Request Header Fields Too Large", b"text/plain", close=True)
                return
            head = bytes(self._buf[:end])
            del self._buf[: end + 4]
            self._handle(head)

    def _handle(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._reply(400, b"Bad Request", b"text/plain", close=True)
            return
        method, target, version = parts
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._reply(400, b"Bad Request", b"text/plain", close=True)
                return
            headers[name.strip().lower()] = value.strip()
        conn = headers.get(b"connection", b"").lower()
        close = (
            version == b"HTTP/1.0"
            or b"close" in conn
            # We never read request bodies: answer, then close rather than misparse the body as a request.
            or headers.get(b"content-length", b"0") != b"0"
            or b"transfer-encoding" in headers
        )
        path = target.split(b"?", 1)[0]
        if path != b"/metrics":
            self._reply(404, b"Not Found", b"text/plain", close=close)
        elif method not in (b"GET", b"HEAD"):
            self._reply(405, b"Method Not Allowed", b"text/plain", close=close, extra=b"Allow: GET, HEAD\r\n")
        else:
            accept = headers.get(b"accept", b"").decode("latin-1")
            encoder, content_type = choose_encoder(accept)
            if content_type.startswith("text/plain"):
                body = self._source.exposition()  # our fast renderer, same bytes as generate_latest
            else:
                body = encoder(self._source)  # OpenMetrics through prometheus_client, from collect()
            self._reply(200, body, content_type.encode(), close=close, head_only=method == b"HEAD")

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: bytes,
        *,
        close: bool,
        head_only: bool = False,
        extra: bytes = b"",
    ) -> None:
        assert self._transport is not None
        reason = _REASONS[status]
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
            status,
            reason,
            content_type,
            len(body),
            extra,
            b"Connection: close\r\n" if close else b"",
        )
        self._transport.write(head if head_only else head + body)
        if close:
            self._transport.close()


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    431: b"Request Header Fields Too Large",
}


async def start_metrics_server(metrics: ExpositionSource, host: str, port: int) -> asyncio.Server:
    """Serve GET /metrics on (host, port) from the running loop. `metrics` is this process's `Metrics`, or a
    `MultiProcessCollector` in the process that serves a multi-process gateway. Port 0 picks a free port
    (see `server.sockets`)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _MetricsProtocol(metrics), host, port, reuse_address=True)


# --------------------------------------------------------------------------------------------- multi-process


def snapshot(metrics: Metrics) -> Snapshot:
    """Every series' state as JSON-friendly lists (what a worker process publishes)."""
    out: Snapshot = {}
    for name, family in metrics.families.items():
        rows: list[list[Any]] = []
        for labels, child in family.series().items():
            if isinstance(child, HistogramChild):
                rows.append([list(labels), [*child.counts, child.sum]])
            else:
                rows.append([list(labels), child.value])
        out[name] = rows
    return out


def merge(into: Metrics, snapshots: Iterable[tuple[Snapshot, bool]]) -> None:
    """Fold `(snapshot, process_alive)` pairs into a fresh `Metrics`: counters and histograms add up; gauges
    combine by their family's mode, from live processes only."""
    gauges: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for snap, alive in snapshots:
        for name, rows in snap.items():
            family = into.families.get(name)
            if family is None:
                continue  # a metric this build does not define
            for labels_list, state in rows:
                labels = tuple(labels_list)  # JSON strings; labels() rejects anything else
                if len(labels) != len(family.labelnames):
                    continue
                if isinstance(family, GaugeFamily):
                    if alive:
                        gauges.setdefault((name, labels), []).append(float(state))
                elif isinstance(family, HistogramFamily):
                    hist = family.labels(*labels)
                    if len(state) == len(hist.counts) + 1:  # skip a process that ran with other buckets
                        hist.counts = list(map(add, hist.counts, state))  # map stops before the sum
                        hist.sum += float(state[-1])
                else:
                    family.labels(*labels).inc(float(state))
    for (name, labels), values in gauges.items():
        gauge = into.families[name]
        assert isinstance(gauge, GaugeFamily)
        value = sum(values) if gauge.mode == "sum" else max(values) if gauge.mode == "max" else min(values)
        gauge.labels(*labels).set(value)


def prepare_multiprocess_dir(directory: str | os.PathLike[str]) -> Path:
    """Create the snapshot directory and delete old snapshots (call once, before starting the workers)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob(f"*{SNAPSHOT_SUFFIX}"):
        old.unlink(missing_ok=True)
    return path


class SnapshotWriter:
    """Publishes one process's metrics to `<directory>/<pid>.metrics.json` every `interval` seconds.
    `before_write`, if given, runs first (e.g. to mirror registry state into gauges, as a scrape would)."""

    def __init__(
        self,
        metrics: Metrics,
        directory: str | os.PathLike[str],
        interval: float = 1.0,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.directory = Path(directory)
        self.interval = interval
        self.before_write = before_write

    def write(self) -> None:
        """Write the snapshot now (atomically: the reader never sees a half-written file)."""
        if self.before_write is not None:
            self.before_write()
        pid = os.getpid()
        final = self.directory / f"{pid}{SNAPSHOT_SUFFIX}"
        tmp = self.directory / f".{pid}.tmp"
        tmp.write_bytes(orjson.dumps(snapshot(self.metrics)))
        os.replace(tmp, final)

    def _write_logged(self) -> None:
        try:
            self.write()
        except OSError as exc:  # a full or vanished directory must not kill the task or mask a cancel
            _log.warning("metrics snapshot to %s failed: %s", self.directory, exc)

    async def run(self) -> None:
        """Write every `interval` until cancelled, then once more (so a clean shutdown loses nothing)."""
        try:
            while True:
                self._write_logged()
                await asyncio.sleep(self.interval)
        finally:
            self._write_logged()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MultiProcessCollector:
    """A Collector that merges every process's snapshot on each scrape. `local`, if given, is this process's
    own live `Metrics`, used instead of its (older) snapshot file."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        duration_buckets: Iterable[float] = DEFAULT_DURATION_BUCKETS,
        local: Metrics | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.duration_buckets = tuple(duration_buckets)
        self.local = local

    def _snapshots(self) -> Iterable[tuple[Snapshot, bool]]:
        me = os.getpid()
        for path in sorted(self.directory.glob(f"*{SNAPSHOT_SUFFIX}")):
            try:
                pid = int(path.name[: -len(SNAPSHOT_SUFFIX)])
            except ValueError:
                continue
            if self.local is not None and pid == me:
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                yield orjson.loads(path.read_bytes()), _pid_alive(pid)
        if self.local is not None:
            yield snapshot(self.local), True

    def merged(self) -> Metrics:
        """A fresh `Metrics` holding the merged view."""
        out = Metrics(self.duration_buckets)
        merge(out, self._snapshots())
        return out

    def collect(self) -> Iterable[Metric]:
        return self.merged().registry.collect()

    def exposition(self) -> bytes:
        return self.merged().exposition()
