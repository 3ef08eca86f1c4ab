"""CPU per request of herder vs SMG, both in gRPC mode, in front of the same simulated gRPC worker.

    python bench/grpc_bench.py [--requests 300] [--concurrency 8] [--smg ~/.cache/herder-bench/venv/bin/smg]

One simulated SGLang gRPC worker (`herder sim --grpc-count 1`, real Qwen3 tokenizer, instant engine) serves
both gateways, started as subprocesses one configuration at a time. The load is non-streaming chat completions
(16 output tokens, greedy) in three shapes: a short prompt, a ~4,000-token system prompt with a different
question each time (prefix shared, so L1 can help), and the same ~4,000-token request repeated (L0 can help);
each with the tokenizer caches off, then on (`--tokenizer-cache-enable-l0 --tokenizer-cache-enable-l1`, the
same flags for both). CPU = user+system time of the gateway process tree (/proc), divided by the requests;
the client and the worker are not counted. Prints a table; lower is better.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TICK = os.sysconf("SC_CLK_TCK")
MODEL = "Qwen/Qwen3-0.6B"
LONG_TEXT = " ".join(
    f"Section {i}: the gateway routes requests to workers, keeps caches warm and measures latency carefully."
    for i in range(260)
)  # about 4,000 Qwen3 tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu(pid: int) -> float:
    """User+system seconds of `pid` and all its descendants (threads included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
        todo.extend(children.get(p, []))
    return total


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


@dataclass
class Shape:
    name: str
    long: bool
    repeat: bool

    def body(self, i: int) -> dict[str, object]:
        system = LONG_TEXT if self.long else "You are a helpful assistant."
        question = "What is the capital of France?" if self.repeat else f"Question {i}: what is {i} plus {i}?"
        return {
            "model": MODEL,
            "max_tokens": 16,
            "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        }


SHAPES = [
    Shape("short prompt", False, False),
    Shape("4k prompt, new question", True, False),
    Shape("4k prompt, same request", True, True),
]


async def drive(url: str, shape: Shape, requests: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        counter = iter(range(requests))

        async def loop() -> None:
            for i in counter:
                r = await client.post("/v1/chat/completions", json=shape.body(i))
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(loop() for _ in range(concurrency)))


def measure(cmd: list[str], url: str, shape: Shape, requests: int, concurrency: int) -> float:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(url, proc)
        asyncio.run(drive(url, shape, min(20, requests), concurrency))  # warm up (connections, caches)
        before = tree_cpu(proc.pid)
        asyncio.run(drive(url, shape, requests, concurrency))
        return (tree_cpu(proc.pid) - before) / requests
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--smg", default=str(Path.home() / ".cache/herder-bench/venv/bin/smg"))
    args = ap.parse_args()
    worker_port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "herder",
            "sim",
            "--http-count",
            "0",
            "--grpc-count",
            "1",
            "--grpc-base-port",
            str(worker_port),
            "--model",
            MODEL,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline().decode()
        if "grpc://" not in line:
            raise RuntimeError(f"simulated worker did not start: {line}")
        worker = f"grpc://127.0.0.1:{worker_port}"
        rows = []
        for caches in (False, True):
            cache_flags = ["--tokenizer-cache-enable-l0", "--tokenizer-cache-enable-l1"] if caches else []
            for shape in SHAPES:
                n = args.requests if not shape.long else max(50, args.requests // 3)
                port = free_port()
                herder_cmd = [sys.executable, "-m", "herder", "launch", "--host", "127.0.0.1", "--port", str(port),
                              "--worker-urls", worker, "--prometheus-port", "0", "--log-level", "warning",
                              "--policy", "round_robin", *cache_flags]  # fmt: skip
                h = measure(herder_cmd, f"http://127.0.0.1:{port}", shape, n, args.concurrency)
                s = float("nan")
                if os.path.exists(args.smg):
                    port = free_port()
                    smg_cmd = [args.smg, "launch", "--host", "127.0.0.1", "--port", str(port), "--worker-urls",
                               worker, "--prometheus-port", str(free_port()), "--log-level", "warn",
                               "--policy", "round_robin", *cache_flags]  # fmt: skip
                    s = measure(smg_cmd, f"http://127.0.0.1:{port}", shape, n, args.concurrency)
                rows.append((shape.name, "on" if caches else "off", h, s))
                print(
                    f"  {shape.name:26} caches {rows[-1][1]:3}: herder {h * 1e6:8.0f} us  smg {s * 1e6:8.0f} us",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(10)
    print(
        f"\nCPU per request (non-streaming chat, 16 output tokens, c={args.concurrency}); lower is better\n"
    )
    print(f"| {'workload':26} | caches | herder µs | SMG µs | herder / SMG |")
    print(f"|{'-' * 28}|--------|----------:|-------:|-------------:|")
    for name, caches, h, s in rows:
        ratio = h / s if s == s and s > 0 else float("nan")
        print(f"| {name:26} | {caches:6} | {h * 1e6:9.0f} | {s * 1e6:6.0f} | {ratio:12.2f} |")


if __name__ == "__main__":
    main()
