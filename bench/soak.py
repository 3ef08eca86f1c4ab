"""Soak: RSS of `herder launch` idle and across N requests (default 1,000,000) against two mock workers.

    python bench/soak.py [--requests 1000000] [--policy cache_aware] [--stream-every 0]

Uses wrk (apt-get install wrk) and ../shared/bench/mock_worker.py. Prints RSS idle, after a 20k-request warm-up,
and every ~100k requests; the figure that matters is growth after the warm-up. A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MOCK = HERE.parent.parent / "shared" / "bench" / "mock_worker.py"
LUA = HERE.parent.parent / "shared" / "bench" / "wrk_post.lua"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not answer")


def wrk(port: int, seconds: float, body_file: str, conns: int = 64) -> int:
    env = dict(os.environ, WRK_BODY_FILE=body_file)
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", str(LUA), f"http://127.0.0.1:{port}"],
                         env=env, capture_output=True, text=True).stdout
    m = re.search(r"WRK_JSON (\{.*\})", out)
    if m:
        return int(json.loads(m.group(1)).get("requests", 0))
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)) if m else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--policy", default="cache_aware")
    args = ap.parse_args()
    ports = [free_port(), free_port()]
    workers = [subprocess.Popen([sys.executable, str(MOCK), "--port", str(p), "--quiet"]) for p in ports]
    gport = free_port()
    gw = subprocess.Popen([sys.executable, "-m", "herder", "launch", "--host", "127.0.0.1", "--port", str(gport),
                           "--worker-urls", *[f"http://127.0.0.1:{p}" for p in ports], "--policy", args.policy,
                           "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
                           "--log-level", "warning"])
    try:
        for p in ports:
            wait_http(p)
        wait_http(gport)
        time.sleep(1)
        idle = rss_mb(gw.pid)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            # distinct prompts would only grow the prefix tree up to --max-tree-size; a fixed body isolates leaks
            fh.write(json.dumps({"model": "mock-model", "max_tokens": 16, "messages": [
                {"role": "system", "content": "You are a helpful assistant. " * 40},
                {"role": "user", "content": "Tell me about the weather."}]}))
            body = fh.name
        done = wrk(gport, 3, body)
        warm = rss_mb(gw.pid)
        print(f"RSS idle {idle:.1f} MB; after warm-up ({done} requests) {warm:.1f} MB", flush=True)
        rows = []
        t0 = time.monotonic()
        next_report = 100_000
        while done < args.requests:
            done += wrk(gport, 10, body)
            if done >= next_report or done >= args.requests:
                rss = rss_mb(gw.pid)
                rows.append((done, rss))
                print(f"{done:>10,} requests  RSS {rss:7.1f} MB  (+{rss - warm:5.1f} MB since warm-up)  "
                      f"{done / (time.monotonic() - t0):,.0f} req/s", flush=True)
                next_report = done + 100_000
        final = rss_mb(gw.pid)
        print(f"\n| RSS idle | RSS after warm-up | RSS after {done:,} requests | growth |")
        print("|---:|---:|---:|---:|")
        print(f"| {idle:.1f} MB | {warm:.1f} MB | {final:.1f} MB | {final - warm:+.1f} MB |")
        return 0
    finally:
        gw.terminate()
        for w in workers:
            w.terminate()
        gw.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
