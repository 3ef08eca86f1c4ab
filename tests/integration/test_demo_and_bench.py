"""`herder demo --exit` prints its summary; `herder bench --workload shared-prefix` against a herder fleet prints
its summary and its --json round-trips through --report."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from herder.loadgen.report import Summary
from herder.sim.fleet import SimFleet
from tests.conftest import GatewayFactory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(*argv: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "herder", *argv,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_demo_prints_summary_and_exits() -> None:
    code, out, err = await _run("demo", "--exit", "--port", str(_free_port()), "--requests", "60")
    assert code == 0, err
    assert "herder demo summary" in out
    rows = [line for line in out.splitlines() if line.startswith("http://127.0.0.1:")]
    assert len(rows) == 4  # one line per simulated worker
    assert sum(int(r.split()[1]) for r in rows) == 120  # every request of both phases was routed
    streamed = next(line for line in out.splitlines() if line.startswith("streamed"))
    assert streamed.split()[1] == "60" and streamed.split()[2] == "0"  # ok, failed
    assert "%" in streamed  # a cache-hit rate was reported by the workers


async def test_bench_shared_prefix_and_json_round_trip(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    async with SimFleet(n=2) as fleet:
        gw = await make_gateway(worker_urls=fleet.urls)
        out_json = tmp_path / "bench.json"
        code, out, err = await _run("bench", "--url", f"http://127.0.0.1:{gw.port}", "--workload", "shared-prefix",
                                    "--num-requests", "40", "--concurrency", "4", "--stream", "--quiet",
                                    "--json", str(out_json))
        assert code == 0, err
        assert "TTFT" in out
        data = json.loads(out_json.read_text())
        summary = Summary.from_dict(data)
        assert summary.completed == 40 and summary.failed == 0
        assert summary.cache_hit_rate is not None and summary.cache_hit_rate > 0.3
        assert summary.to_dict() == data
        code, again, err = await _run("bench", "--report", str(out_json))
        assert code == 0, err
        assert again == out
