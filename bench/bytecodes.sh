#!/usr/bin/env bash
# Python bytecodes per proxied request, by phase (before/after the upstream send, the answer, after it), with the
# top functions of the two critical phases. Two mock workers, a closed-loop client at concurrency 1.
#   bench/bytecodes.sh [--stream] [-- extra herder launch flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
STREAM=""
if [ "${1:-}" = "--stream" ]; then STREAM="--stream"; shift; fi
[ "${1:-}" = "--" ] && shift
PY=.venv/bin/python; BENCH=../shared/bench
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
W1=$(free_port); W2=$(free_port); GW=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
$PY $BENCH/mock_worker.py --port "$W1" > /dev/null 2>&1 & pids+=($!)
$PY $BENCH/mock_worker.py --port "$W2" > /dev/null 2>&1 & pids+=($!)
$PY bench/bytecode_phases.py --skip 2000 --count 1000 -- launch --host 127.0.0.1 --port "$GW" \
  --worker-urls "http://127.0.0.1:$W1" "http://127.0.0.1:$W2" --log-level error "$@" &
G=$!; pids+=($G)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$GW/readiness" > /dev/null 2>&1 && break; sleep 0.2; done
$PY bench/closed_loop_client.py "$GW" 3200 1 $STREAM
kill -TERM "$G"; wait "$G" || true
