#!/usr/bin/env bash
# User-space instructions per request in the gateway process, counted by callgrind: repeatable (to ~0.2 %) on
# machines where wall-clock CPU per request varies by +-30 % between runs. Two mock workers, a warm-up, counters
# zeroed, then N requests from a closed-loop client over 4 connections.
#   bench/instructions.sh [N=2000] [--stream] [-- extra herder launch flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"; shift || true
STREAM=""
if [ "${1:-}" = "--stream" ]; then STREAM="--stream"; shift; fi
[ "${1:-}" = "--" ] && shift
PY=.venv/bin/python; BENCH=../shared/bench; OUT=$(mktemp -d)
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
W1=$(free_port); W2=$(free_port); GW=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT
$PY $BENCH/mock_worker.py --port "$W1" > /dev/null 2>&1 & pids+=($!)
$PY $BENCH/mock_worker.py --port "$W2" > /dev/null 2>&1 & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" $PY -m herder launch --host 127.0.0.1 --port "$GW" \
  --worker-urls "http://127.0.0.1:$W1" "http://127.0.0.1:$W2" --log-level warning "$@" > "$OUT/gw.log" 2>&1 &
G=$!; pids+=($G)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$GW/readiness" > /dev/null 2>&1 && break; sleep 0.2; done
$PY bench/closed_loop_client.py "$GW" 200 4 $STREAM
callgrind_control -z "$G" > /dev/null 2>&1
$PY bench/closed_loop_client.py "$GW" "$N" 4 $STREAM
callgrind_control --dump "$G" > /dev/null 2>&1
TOTAL=$(grep -h "^summary:\|^totals:" "$OUT/cg.1" | head -1 | awk '{print $2}')
echo "instructions/request: $(( TOTAL / N ))"
