"""Gateway CPU per request with cache_aware and a 2,000-character shared-prefix prompt: herder vs SMG.

    python bench/prefix_cpu.py [--rounds 3] [--duration 5] [--chars 2000]

The shared harness (../shared/bench/run.py) sends a short prompt; this script sends chat requests whose system
prompt is a shared 2,000-character prefix plus a short unique user turn (wrk picks one of 64 bodies per request),
so cache_aware's prefix lookup and insert run on realistic text. Both gateways use --policy cache_aware, two mock
workers, c=64, interleaved rounds; CPU is the gateway process's utime+stime over the measured window. Needs wrk
and the bench venv from ../shared/bench/setup.sh (for `smg`). A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "bench"
SMG = Path.home() / ".cache" / "herder-bench" / "venv" / "bin" / "smg"
TICK = os.sysconf("SC_CLK_TCK")

LUA = r"""
local bodies = {}
local f = assert(io.open(os.getenv("BODIES_FILE"), "rb"))
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"},
                    bodies[(counter % #bodies) + 1])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_ready(port: int, timeout: float = 60) -> None:
    body = json.dumps(
        {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body.encode())
                )
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gateway on {port} not ready")


def run_wrk(port: int, seconds: float, lua: str, bodies: str) -> int:
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{max(1, round(seconds))}s", "-s", lua, f"http://127.0.0.1:{port}"],
        env=dict(os.environ, BODIES_FILE=bodies),
        capture_output=True,
        text=True,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)) if m else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--chars", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(1)
    words = [
        "the",
        "a",
        "of",
        "model",
        "cache",
        "prefix",
        "worker",
        "token",
        "stream",
        "route",
        "gateway",
        "fleet",
        "prompt",
        "system",
    ]
    prefix = ""
    while len(prefix) < args.chars:
        prefix += rng.choice(words) + " "
    prefix = prefix[: args.chars]
    tmp = Path(tempfile.mkdtemp())
    bodies = tmp / "bodies.txt"
    bodies.write_text(
        "\n".join(
            json.dumps(
                {
                    "model": "mock-model",
                    "max_tokens": 16,
                    "messages": [
                        {"role": "system", "content": prefix},
                        {"role": "user", "content": f"question {i}: what now?"},
                    ],
                }
            )
            for i in range(64)
        )
        + "\n"
    )
    lua = tmp / "bodies.lua"
    lua.write_text(LUA)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    procs = [
        subprocess.Popen([sys.executable, str(SHARED / "mock_worker.py"), "--port", str(p), "--quiet"])
        for p in ports
    ]
    gateways: dict[str, subprocess.Popen[bytes]] = {}
    gports: dict[str, int] = {}
    try:
        time.sleep(1)
        herder_port = free_port()
        gateways["herder"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "herder",
                "launch",
                "--host",
                "127.0.0.1",
                "--port",
                str(herder_port),
                "--worker-urls",
                *urls,
                "--policy",
                "cache_aware",
                "--prometheus-host",
                "127.0.0.1",
                "--prometheus-port",
                str(free_port()),
                "--log-level",
                "warning",
            ]
        )
        gports["herder"] = herder_port
        if SMG.exists():
            smg_port = free_port()
            gateways["smg"] = subprocess.Popen(
                [
                    str(SMG),
                    "launch",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(smg_port),
                    "--worker-urls",
                    *urls,
                    "--policy",
                    "cache_aware",
                    "--prometheus-host",
                    "127.0.0.1",
                    "--prometheus-port",
                    str(free_port()),
                    "--log-level",
                    "warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            gports["smg"] = smg_port
        for port in gports.values():
            wait_ready(port)
        results: dict[str, list[float]] = {name: [] for name in gateways}
        for r in range(args.rounds):
            names = list(gateways)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                run_wrk(gports[name], 1, str(lua), str(bodies))  # warm-up
                before = cpu_ticks(gateways[name].pid)
                n = run_wrk(gports[name], args.duration, str(lua), str(bodies))
                used = cpu_ticks(gateways[name].pid) - before
                us = used / TICK / max(n, 1) * 1e6
                results[name].append(us)
                print(f"round {r} {name:7s} {n / args.duration:8.0f} req/s  {us:6.1f} us CPU/req", flush=True)
        med = {name: sorted(v)[len(v) // 2] for name, v in results.items()}
        print(f"\n| gateway (cache_aware, {args.chars}-char shared prefix, c=64) | CPU us/req (median) |")
        print("|---|---:|")
        for name, value in med.items():
            print(f"| {name} | {value:.1f} |")
        if "smg" in med:
            print(f"| herder / smg | {med['herder'] / med['smg']:.2f} |")
        return 0
    finally:
        for p in [*gateways.values(), *procs]:
            p.terminate()
        for p in [*gateways.values(), *procs]:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    raise SystemExit(main())
