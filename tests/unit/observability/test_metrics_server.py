"""The /metrics listener over real sockets, and multi-process aggregation with real processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from herder.observability.metrics import Metrics
from herder.observability.metrics_server import (
    SNAPSHOT_SUFFIX,
    MultiProcessCollector,
    SnapshotWriter,
    merge,
    prepare_multiprocess_dir,
    snapshot,
    start_metrics_server,
)
from tests.waiting import wait_for


async def _read_response(
    reader: asyncio.StreamReader, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    length = 0 if head_only else int(headers["content-length"])
    body = await reader.readexactly(length)
    return status, headers, body


@pytest.fixture
async def served() -> AsyncIterator[tuple[Metrics, int]]:
    metrics = Metrics()
    server = await start_metrics_server(metrics, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield metrics, port
    server.close()
    await server.wait_closed()


async def test_get_metrics_serves_live_exposition(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    metrics.http_request("POST", "/v1/chat/completions").count.inc(3)
    # Two requests on one keep-alive connection, the second after another update.
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await _read_response(reader)
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (sample,) = families["smg_http_requests"].samples
    assert sample.value == 3
    metrics.http_request("POST", "/v1/chat/completions").count.inc()
    writer.write(b"GET /metrics?name=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = await _read_response(reader)
    assert status == 200
    assert b'smg_http_requests_total{method="POST",path="/v1/chat/completions"} 4.0' in body
    assert headers["connection"] == "close"
    assert await reader.read() == b""  # the server closed the connection
    writer.close()


async def test_other_paths_methods_and_garbage(served: tuple[Metrics, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Pipelined: all three answered in order on one connection.
    writer.write(
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert (await _read_response(reader))[0] == 404
    status, headers, _ = await _read_response(reader)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    status, headers, body = await _read_response(reader, head_only=True)
    assert status == 200
    assert int(headers["content-length"]) > 0
    assert body == b""
    writer.write(b"this is not http\r\n\r\n")
    assert (await _read_response(reader))[0] == 400
    assert await reader.read() == b""
    writer.close()


async def test_request_with_body_is_answered_then_closed(served: tuple[Metrics, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    status, headers, _ = await _read_response(reader)
    assert status == 200
    assert headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()


async def test_oversized_header_block_is_rejected(served: tuple[Metrics, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    assert (await _read_response(reader))[0] == 431
    writer.close()


async def test_openmetrics_is_negotiated(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.worker_retries.labels("regular", "chat").inc()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n"
    )
    status, headers, body = await _read_response(reader)
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in om_parse(body.decode())}
    assert families["smg_worker_retries"].samples[0].value == 1
    writer.close()


# --------------------------------------------------------------------------------------------- multi-process


def _process_metrics(seed: int) -> Metrics:
    m = Metrics()
    h = m.http_request("POST", "/v1/chat/completions")
    h.count.inc(seed)
    h.record(200, "", 0.01 * seed)
    m.http_connections_active.child.set(seed)  # sum
    m.worker_pool_size.labels("regular", "http", "llama").set(2 + seed)  # max
    m.worker("http://w1:8000").health.set(seed % 2)  # min
    return m


def test_merge_adds_counters_and_histograms_and_combines_gauges_by_mode() -> None:
    a, b, dead = _process_metrics(1), _process_metrics(2), _process_metrics(4)
    out = Metrics()
    merge(
        out, [(snapshot(a), True), (snapshot(b), True), (orjson.loads(orjson.dumps(snapshot(dead))), False)]
    )
    assert out.http_requests.labels("POST", "/v1/chat/completions").value == 1 + 2 + 4
    hist = out.http_request_duration.labels("POST", "/v1/chat/completions")
    assert hist.count == 3
    assert hist.sum == pytest.approx(0.07)
    assert out.http_responses.labels("/v1/chat/completions", "200", "").value == 3
    # Gauges: only the live processes count.
    assert out.http_connections_active.child.value == 1 + 2
    assert out.worker_pool_size.labels("regular", "http", "llama").value == 4
    assert out.worker_health.labels("http://w1:8000").value == 0


def test_merge_skips_a_process_with_other_buckets() -> None:
    odd = Metrics(duration_buckets=[1, 2])
    odd.router_ttft.labels("http", "regular", "m", "chat").observe(0.5)
    normal = Metrics()
    normal.router_ttft.labels("http", "regular", "m", "chat").observe(0.5)
    out = Metrics()
    merge(out, [(snapshot(odd), True), (snapshot(normal), True)])
    assert out.router_ttft.labels("http", "regular", "m", "chat").count == 1


def _child_process(directory: str, seed: int) -> None:
    metrics = _process_metrics(seed)
    # The hook runs before each write, like a scrape's gauge refresh would.
    SnapshotWriter(
        metrics, directory, before_write=lambda: metrics.http_rate_limit.labels("allowed").inc()
    ).write()


def test_snapshot_files_from_real_processes(tmp_path: Path) -> None:
    directory = prepare_multiprocess_dir(tmp_path / "mp")
    (directory / f"999999{SNAPSHOT_SUFFIX}").write_bytes(b"{}")  # stale, from a previous run
    directory = prepare_multiprocess_dir(directory)
    assert list(directory.iterdir()) == []
    ctx = multiprocessing.get_context("spawn")
    for seed in (1, 2):
        proc = ctx.Process(target=_child_process, args=(str(directory), seed))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
    local = _process_metrics(4)
    collector = MultiProcessCollector(directory, local=local)
    SnapshotWriter(local, directory).write()  # ignored in favour of the live `local`
    local.http_request("POST", "/v1/chat/completions").count.inc(10)
    merged = collector.merged()
    assert merged.http_requests.labels("POST", "/v1/chat/completions").value == 1 + 2 + 14
    assert merged.http_rate_limit.labels("allowed").value == 2  # one hook run per child process
    # The children exited, so their gauges are gone; the live local one remains.
    assert merged.http_connections_active.child.value == 4
    text = b"".join(
        line
        for line in collector.merged().exposition().splitlines(keepends=True)
        if b"smg_http_requests" in line
    )
    assert b"17.0" in text


async def test_listener_serves_the_merged_view(tmp_path: Path) -> None:
    SnapshotWriter(_process_metrics(2), tmp_path).write()
    local = _process_metrics(5)
    collector = MultiProcessCollector(tmp_path, local=local)
    server = await start_metrics_server(collector, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = await _read_response(reader)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    # Our own snapshot file is superseded by `local`; the only live process is us, so gauges are ours.
    (sample,) = families["smg_http_requests"].samples
    assert sample.value == 5
    (conn,) = families["smg_http_connections_active"].samples
    assert conn.value == 5


async def test_writer_task_writes_periodically_and_on_cancel(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SnapshotWriter(metrics, tmp_path, interval=0.01)
    task = asyncio.create_task(writer.run())
    path = tmp_path / f"{os.getpid()}{SNAPSHOT_SUFFIX}"
    await wait_for(path.exists, timeout=5, interval=0.01, message="the writer task wrote no snapshot")
    metrics.http_rate_limit.labels("allowed").inc(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    data = orjson.loads(path.read_bytes())
    assert data["smg_http_rate_limit_total"] == [[["allowed"], 5.0]]
    assert not list(tmp_path.glob(".*.tmp"))


async def test_writer_survives_a_vanished_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = SnapshotWriter(Metrics(), tmp_path / "gone", interval=0.01)
    task = asyncio.create_task(writer.run())

    def failures() -> int:
        return sum("metrics snapshot" in r.getMessage() for r in caplog.records)

    # it logs the failed write and goes on: a second failure means it survived the first
    await wait_for(lambda: failures() >= 2 or task.done(), message="the writer logged no failed snapshot")
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "metrics snapshot" in caplog.text
