"""`--workers N` under load: CPU per request split into user and kernel time, and context switches per request.

    python bench/workers_sched.py [--procs 1 2] [--rounds 3] [--duration 5] [--conns 64] [-- extra herder args]

Starts two mock workers (../shared/bench/mock_worker.py) and, each round, one gateway per `--procs` value in turn
(interleaved), drives it with wrk (chat, non-streamed, 16 tokens) and reads the gateway's process tree from
/proc before and after: user and system CPU per request, voluntary context switches per request (the process
waited for events) and involuntary ones (the scheduler took the CPU away while the process could run). Medians
over the rounds. The involuntary column is what separates "more work per request" from "the same work, preempted
more often" (on a machine whose cores the load generator and the workers share).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from soak import MOCK, free_port, wait_http, wrk


@dataclass
class Sample:
    """Counters summed over a process tree (CPU in clock ticks)."""

    user: int = 0
    system: int = 0
    voluntary: int = 0
    involuntary: int = 0


def tree(pid: int) -> list[int]:
    """`pid` and its children (a `--workers N` supervisor and its gateway processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(c) for c in children)]


def sample(pids: list[int]) -> Sample:
    total = Sample()
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total.user += int(stat[11])
        total.system += int(stat[12])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    total.voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    total.involuntary += int(line.split()[1])
    return total


def measure(procs: int, worker_urls: list[str], extra: list[str], body: str, args: argparse.Namespace
            ) -> dict[str, float]:
    port = free_port()
    argv = [sys.executable, "-m", "herder", "launch", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *worker_urls, "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
            "--log-level", "warning", *extra]
    if procs > 1:
        argv += ["--workers", str(procs)]
    gw = subprocess.Popen(argv)
    try:
        wait_http(port)
        wrk(port, 2, body, args.conns)  # warm-up
        pids = tree(gw.pid)
        before, t0 = sample(pids), time.monotonic()
        requests = wrk(port, args.duration, body, args.conns)
        after, elapsed = sample(pids), time.monotonic() - t0
    finally:
        gw.terminate()
        gw.wait(30)
    tick_us = 1e6 / 100  # USER_HZ
    n = max(requests, 1)
    return {
        "requests/s": requests / elapsed,
        "user us/req": (after.user - before.user) * tick_us / n,
        "system us/req": (after.system - before.system) * tick_us / n,
        "CPU us/req": (after.user + after.system - before.user - before.system) * tick_us / n,
        "voluntary switches/req": (after.voluntary - before.voluntary) / n,
        "involuntary switches/req": (after.involuntary - before.involuntary) / n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("extra", nargs="*", help="extra `herder launch` arguments (after --)")
    args = ap.parse_args()
    ports = [free_port(), free_port()]
    workers = [subprocess.Popen([sys.executable, str(MOCK), "--port", str(p), "--quiet"]) for p in ports]
    try:
        for p in ports:
            wait_http(p)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            fh.write(json.dumps({"model": "mock-model", "max_tokens": 16,
                                 "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}))
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        results: dict[int, list[dict[str, float]]] = {n: [] for n in args.procs}
        for r in range(args.rounds):
            for n in args.procs:
                results[n].append(measure(n, urls, args.extra, fh.name, args))
                row = results[n][-1]
                print(f"round {r + 1} procs {n}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
        keys = list(results[args.procs[0]][0])
        print(f"\nchat c={args.conns}, {args.rounds} rounds x {args.duration} s, medians; extra: {args.extra or '-'}\n")
        print("| metric | " + " | ".join(f"{n} process{'es' if n > 1 else ''}" for n in args.procs) + " |")
        print("|---|" + "---:|" * len(args.procs))
        for key in keys:
            cells = [statistics.median(row[key] for row in results[n]) for n in args.procs]
            print(f"| {key} | " + " | ".join(f"{c:.3f}" if c < 10 else f"{c:.0f}" for c in cells) + " |")
        return 0
    finally:
        for w in workers:
            w.terminate()


if __name__ == "__main__":
    raise SystemExit(main())
