"""Run `herder launch` with a bytecode counter: Python opcodes per request, split by phase (repeatable).

    python bench/bytecode_phases.py [--skip 2000] [--count 1000] -- launch --worker-urls ... [herder flags]

Phases of one proxied request: `before send` (the client's read until the upstream write), `after send` (the
rest of that read: bookkeeping while the worker works), `answer` (the worker's read until the client's write),
`after answer`. After `--skip` client reads, `sys.settrace` counts opcode events per function for `--count`
reads, then the report goes to stderr at exit. Tracing slows the gateway ~50x: counts, not timings. Driven by
`bench/bytecodes.sh`.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import sys
from types import FrameType
from typing import Any

from herder.server import http as server_http
from herder.server import messages
from herder.workers import pool

_counts: collections.Counter[str] = collections.Counter()
_by_function: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
_state = {"phase": "other", "reads": 0}


def _tracer(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    if event == "opcode":
        code = frame.f_code
        phase = _state["phase"]
        _counts[phase] += 1  # type: ignore[index]
        _by_function[phase][f"{code.co_filename.split('src/')[-1]}:{code.co_firstlineno} {code.co_name}"] += 1  # type: ignore[index]
    return _tracer


def _install(skip: int, count: int) -> None:
    client_read = server_http.HttpProtocol.data_received
    upstream_start = pool.UpstreamConnection.start
    upstream_read = pool.UpstreamConnection.data_received
    reply_send = messages.Reply.send

    def on_client_read(self: server_http.HttpProtocol, data: bytes) -> None:
        _state["reads"] += 1  # type: ignore[operator]
        if _state["reads"] == skip:
            sys.settrace(_tracer)
        elif _state["reads"] == skip + count:
            sys.settrace(None)
        _state["phase"] = "before send"
        client_read(self, data)
        _state["phase"] = "other"

    def on_upstream_start(self: pool.UpstreamConnection, ex: pool.BaseExchange) -> None:
        upstream_start(self, ex)
        _state["phase"] = "after send"

    def on_upstream_read(self: pool.UpstreamConnection, data: bytes) -> None:
        _state["phase"] = "answer"
        upstream_read(self, data)
        _state["phase"] = "other"

    def on_reply_send(self: messages.Reply, *args: Any, **kwargs: Any) -> None:
        reply_send(self, *args, **kwargs)
        _state["phase"] = "after answer"

    server_http.HttpProtocol.data_received = on_client_read  # type: ignore[method-assign]
    pool.UpstreamConnection.start = on_upstream_start  # type: ignore[method-assign]
    pool.UpstreamConnection.data_received = on_upstream_read  # type: ignore[method-assign]
    messages.Reply.send = on_reply_send  # type: ignore[method-assign]

    def report() -> None:
        print(f"bytecodes per request ({count} requests):", file=sys.stderr)
        for phase in ("before send", "after send", "answer", "after answer", "other"):
            print(f"  {phase:13s} {_counts[phase] / count:8.1f}", file=sys.stderr)
        for phase in ("before send", "answer"):
            print(f"-- {phase}: top functions", file=sys.stderr)
            for name, n in _by_function[phase].most_common(25):
                print(f"  {n / count:7.1f}  {name}", file=sys.stderr)

    atexit.register(report)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", type=int, default=2000, help="client reads before counting (warm-up)")
    ap.add_argument("--count", type=int, default=1000, help="client reads counted")
    ap.add_argument("herder_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    _install(args.skip, args.count)
    from herder.cli import main as herder_main

    rest = args.herder_args[1:] if args.herder_args[:1] == ["--"] else args.herder_args
    sys.exit(herder_main(rest))


if __name__ == "__main__":
    main()
