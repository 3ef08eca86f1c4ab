"""`herder launch --workers 2`: two processes on one port agree on prefix affinity; metrics are merged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter

import httpx
import pytest

from herder.multiproc import oversubscribed
from herder.sim.fleet import start_subprocess_fleet
from tests.waiting import wait_for_process, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _served(urls: list[str]) -> list[int]:
    return [int(httpx.get(u + "/sim/stats").json()["inference_requests"]) for u in urls]


def test_pin_to_cpu_round_robin() -> None:
    """pin_to_cpu(i), in a process of its own: the i-th usable CPU (round robin), and only that one."""
    code = ("import json, os; from herder.multiproc import pin_to_cpu; usable = sorted(os.sched_getaffinity(0)); "
            "cpu = pin_to_cpu(3); print(json.dumps([usable, cpu, sorted(os.sched_getaffinity(0))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    usable, cpu, after = json.loads(out)
    if len(usable) < 2:
        assert cpu is None and after == usable
    else:
        assert cpu == usable[3 % len(usable)]
        assert after == [cpu]


def test_more_processes_than_usable_cpus_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert oversubscribed(1) is None and oversubscribed(2) is None
    warning = oversubscribed(3)
    assert warning is not None and "--workers 3" in warning and "2 CPUs" in warning


def test_two_processes_keep_each_prefix_group_on_one_worker() -> None:
    with start_subprocess_fleet(3) as fleet:
        port, mport = _free_port(), _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "herder", "launch", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
             "--cpu-affinity", "auto",
             "--worker-urls", *fleet.urls, "--policy", "cache_aware", "--prometheus-host", "127.0.0.1",
             "--prometheus-port", str(mport), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            # Ready = both processes answered /readiness 200 (each has registered its workers).
            ready: set[str] = set()

            def both_ready() -> bool:
                try:
                    r = httpx.get(url + "/readiness", headers={"connection": "close"}, timeout=1)
                    if r.status_code == 200:
                        ready.add(r.headers["x-herder-process"])
                except httpx.HTTPError:
                    pass
                return ready == {"0", "1"}

            wait_for_process(both_ready, proc, "the gateway", timeout=30, interval=0.05)
            # --cpu-affinity auto: each process on its own CPU when there are two to use.
            usable = sorted(os.sched_getaffinity(0))
            if len(usable) >= 2:
                with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                    children = [int(pid) for pid in f.read().split()]
                placed = sorted(tuple(os.sched_getaffinity(pid)) for pid in children)
                assert placed == [(usable[0],), (usable[1],)], placed
            processes: Counter[str] = Counter()
            owners = []
            for group in range(6):
                system = f"You are agent {group}. " + " ".join(f"rule-{group}-{k}" for k in range(100))
                before = _served(fleet.urls)
                for i in range(16):
                    # a new connection per request: the kernel spreads them over both processes
                    r = httpx.post(url + "/v1/chat/completions", headers={"connection": "close"}, json={
                        "model": "sim-model", "max_tokens": 1,
                        "messages": [{"role": "system", "content": system},
                                     {"role": "user", "content": f"question {i}"}]})
                    assert r.status_code == 200
                    processes[r.headers["x-herder-process"]] += 1
                after = _served(fleet.urls)
                delta = [a - b for a, b in zip(after, before, strict=True)]
                assert sorted(delta) == [0, 0, 16], (group, delta)
                owners.append(delta.index(16))
            assert set(processes) == {"0", "1"}, processes  # both processes served
            assert len(set(owners)) >= 2, owners  # and groups are spread over the fleet
            # The supervisor merges snapshots the processes publish once a second: poll (bounded) for the total.
            total = 0.0

            def merged_total_is_96() -> bool:
                nonlocal total
                metrics = httpx.get(f"http://127.0.0.1:{mport}/metrics").text
                total = sum(float(x.rsplit(" ", 1)[1]) for x in metrics.splitlines()
                            if x.startswith("smg_http_requests_total{") and 'path="/v1/chat/completions"' in x)
                return total == 96

            wait_until(merged_total_is_96, timeout=10, interval=0.1, message=lambda: f"merged total {total}, not 96")
            assert total == 96
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
